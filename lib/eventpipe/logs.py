"""Log lines: one format for the CLI, the notebooks and ``run.log``."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


# What a run prints on the console only with -v (it is always in run.log): papermill's cell-by-cell log
# and the notebooks' outputs (forwarded as papermill's INFO lines), the runner's stage-by-stage lines (the
# progress lines say the same), and start-up notes a user need not see every run. Warnings and errors of
# every logger always reach the console.
DETAIL_LOGGERS = (
    "papermill",
    "eventpipe.orchestration.runner",
    "eventpipe.orchestration.kernel",
    "eventpipe.storage.migrate",
    "eventpipe.demo.server",
)
# set on a log record that states a run's outcome, which the command prints itself (once, in its summary)
OUTCOME = "eventpipe_outcome"
# a log line of a notebook's kernel, forwarded by papermill: it already carries its time, level and logger
_FORWARDED = re.compile(r"\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


class QuietConsole(logging.Filter):
    """Without -v: only warnings and errors of the ``DETAIL_LOGGERS`` pass, and no run outcome (the command's
    summary states it, once)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, OUTCOME, False):
            return False
        if record.levelno >= logging.WARNING:
            return True
        return not any(record.name == n or record.name.startswith(n + ".") for n in DETAIL_LOGGERS)


class ConsoleFormatter(logging.Formatter):
    """The usual line; a notebook's own log line forwarded by papermill is printed as the notebook wrote it
    (not behind a second time, level and ``papermill:``), without its trailing newline."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record).rstrip("\n")
        message = record.getMessage().strip("\n")
        if record.name == "papermill" and _FORWARDED.match(message):
            return message
        return line


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is written: under a live progress display (which
    redirects it) the line goes above the display instead of through it."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def setup_cli_logging(level: int = logging.INFO, log_format: str = "text", verbose: bool = False) -> None:
    """The command line's logging: every logger to stderr (as text, or one JSON object a line), third-party
    chatter quieted; without ``verbose`` the run's detail (``DETAIL_LOGGERS``) stays in ``run.log``."""
    handler = _CurrentStderr()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else ConsoleFormatter(LOG_FORMAT, TIME_FORMAT)
    )
    handler.addFilter(_CONSOLE)
    if not verbose:
        handler.addFilter(QuietConsole())
    logging.basicConfig(level=level, handlers=[handler])
    for noisy in ("asyncio", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("traitlets").setLevel(logging.ERROR)  # zmq clean-up chatter from jupyter_client


class RunLog(logging.FileHandler):
    """A run's ``run.log``. A line that cannot be written (a full disk) is not a traceback on the console:
    the first error is kept in ``error`` and the lines after it are dropped (the runner reports the log as
    not written)."""

    error: OSError | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.error is None:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        e = sys.exc_info()[1]
        if isinstance(e, OSError):
            self.error = self.error or e
        else:
            super().handleError(record)

    def close(self) -> None:
        try:
            super().close()
        except OSError as e:  # the last buffered bytes did not fit either
            self.error = self.error or e


def attach_file_log(path: Path, redactor: Callable[[str], str] | None = None) -> RunLog:
    """Copy every log line of this process to ``path`` (a run's ``run.log``) until the handler is removed,
    each passed through ``redactor`` first."""
    handler = RunLog(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RedactFilter(redactor))
    logging.getLogger().addHandler(handler)
    return handler


def detach_file_log(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    handler.close()
