"""The benchmark behind ``bench/run.py``: one module per part of the run (see bench/README.md)."""
