"""Log lines: one format for the CLI, the notebooks and ``run.log``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TIME_FORMAT = "%H:%M:%S"
_MARK = "_eventpipe"


def setup_logging(level: int = logging.INFO) -> None:
    """The package's log lines to stderr (once): in a notebook they become part of the saved report."""
    root = logging.getLogger("eventpipe")
    if not any(getattr(h, _MARK, False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT, TIME_FORMAT))
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    root.setLevel(level)


def setup_cli_logging(level: int = logging.INFO) -> None:
    """The command line's logging: every logger to stderr, third-party chatter quieted."""
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt=TIME_FORMAT, stream=sys.stderr)
    for noisy in ("asyncio", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("traitlets").setLevel(logging.ERROR)  # zmq clean-up chatter from jupyter_client


def attach_file_log(path: Path) -> logging.Handler:
    """Copy every log line of this process to ``path`` (a run's ``run.log``) until the handler is removed."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(handler)
    return handler


def detach_file_log(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    handler.close()
