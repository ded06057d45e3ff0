"""The command line (``run_pipeline.py``): argparse commands (``main``) and what they print (``render``)."""

from .main import main

__all__ = ["main"]
