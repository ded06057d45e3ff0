"""The console without -v: warnings and errors of every logger, no papermill cell log, no notebook output, no
run outcome (the summary prints it); a notebook's forwarded log line printed as the notebook wrote it."""

from __future__ import annotations

import logging

from eventpipe.logs import LOG_FORMAT, OUTCOME, TIME_FORMAT, ConsoleFormatter, QuietConsole


def _shown(name: str, level: int, message: str, **extra: object) -> str | None:
    record = logging.LogRecord(name, level, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    if not QuietConsole().filter(record):
        return None
    return ConsoleFormatter(LOG_FORMAT, TIME_FORMAT).format(record)


def test_detail_stays_off_the_console():
    assert _shown("papermill", logging.INFO, "Executing Cell 1-----") is None
    assert _shown("papermill", logging.INFO, "   seq  raw\n0  0  {...}") is None  # a notebook's DataFrame
    assert _shown("eventpipe.orchestration.runner", logging.INFO, "stage extract: executing") is None
    assert _shown("eventpipe.storage.migrate", logging.INFO, "database schema upgraded") is None


def test_warnings_errors_and_operator_lines_reach_the_console():
    assert "clamped" in (
        _shown("eventpipe.orchestration.backfill", logging.INFO, "--workers 9 clamped") or ""
    )
    assert "kernel died" in (_shown("papermill", logging.ERROR, "kernel died") or "")
    assert "slow" in (_shown("eventpipe.orchestration.runner", logging.WARNING, "slow") or "")


def test_a_run_outcome_is_left_to_the_summary():
    assert (
        _shown("eventpipe.orchestration.runner", logging.ERROR, "stage extract failed", **{OUTCOME: True})
        is None
    )


def test_a_forwarded_notebook_line_is_printed_once_as_written():
    line = "12:00:01 WARNING eventpipe.source.client: page 1 attempt 1 failed\n\n"
    assert _shown("papermill", logging.WARNING, line) == line.strip()
