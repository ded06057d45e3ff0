"""Log lines: one format for the CLI, the notebooks and ``run.log``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TIME_FORMAT = "%H:%M:%S"
_MARK = "_eventpipe"


class RedactFilter(logging.Filter):
    """Passes every record through ``redactor`` (secrets out) before its handler writes it."""

    def __init__(self, redactor: Callable[[str], str] | None = None):
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if self.redactor is not None:
            message = record.getMessage()
            clean = self.redactor(message)
            if clean != message:
                record.msg, record.args = clean, None
        return True


# on the console handlers of this process; ``redact_console`` hands it the secrets once settings resolve
_CONSOLE = RedactFilter()


def redact_console(redactor: Callable[[str], str]) -> None:
    """From now on, every log line this process prints has the secrets ``redactor`` knows replaced."""
    _CONSOLE.redactor = redactor


def setup_logging(level: int = logging.INFO) -> None:
    """The package's log lines in a notebook (once): INFO on stdout, plain output; warnings and errors on
    stderr, so JupyterLab's red box is kept for what deserves it. Both become part of the saved report."""
    root = logging.getLogger("eventpipe")
    if not any(getattr(h, _MARK, False) for h in root.handlers):
        info = logging.StreamHandler(sys.stdout)
        info.addFilter(lambda r: r.levelno < logging.WARNING)
        warn = logging.StreamHandler(sys.stderr)
        warn.setLevel(logging.WARNING)
        for handler in (info, warn):
            handler.setFormatter(logging.Formatter(LOG_FORMAT, TIME_FORMAT))
            handler.addFilter(_CONSOLE)
            setattr(handler, _MARK, True)
            root.addHandler(handler)
    root.setLevel(level)


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        import json
        from datetime import datetime, timezone

        out = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_cli_logging(level: int = logging.INFO, log_format: str = "text") -> None:
    """The command line's logging: every logger to stderr (as text, or one JSON object a line), third-party
    chatter quieted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(LOG_FORMAT, TIME_FORMAT)
    )
    handler.addFilter(_CONSOLE)
    logging.basicConfig(level=level, handlers=[handler])
    for noisy in ("asyncio", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("traitlets").setLevel(logging.ERROR)  # zmq clean-up chatter from jupyter_client


def attach_file_log(path: Path, redactor: Callable[[str], str] | None = None) -> logging.Handler:
    """Copy every log line of this process to ``path`` (a run's ``run.log``) until the handler is removed,
    each passed through ``redactor`` first."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RedactFilter(redactor))
    logging.getLogger().addHandler(handler)
    return handler


def detach_file_log(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    handler.close()
