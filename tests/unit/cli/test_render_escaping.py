"""What the command line prints: text from runs and APIs is shown as it is, never read as rich markup."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from eventpipe.cli import render
from eventpipe.orchestration.backfill import PartitionResult

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
T1 = datetime(2024, 5, 2, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")


def test_the_partition_table_shows_the_failure_class_in_brackets(capsys):
    error = "[cell error]: [red]4[/red] [bold]x"
    render.partitions([PartitionResult(T0, T1, "failed", run_id="r[1]", error=error)])
    out = capsys.readouterr().out
    assert "[cell error]" in out
    assert "[red]4[/red] [bold]x" in out
    assert "r[1]" in out


def test_status_shows_errors_and_run_ids_as_they_are(capsys):
    run = {
        "run_id": "[b]run[/b]",
        "kind": "incremental",
        "status": "failed",
        "window_since": "2024-05-01T00:00:00+00:00",
        "window_until": "2024-05-02T00:00:00+00:00",
        "extracted": None,
        "loaded": None,
        "pass_rate": None,
        "duration_s": None,
        "failure_class": "cell error",
        "error": "[cell error]: [link=x]y",
    }
    data = {
        "database": "sqlite:///[i]x[/i]",
        "runs": [run],
        "watermark": None,
        "dead_letters": {"pending": 0, "replayed": 0, "discarded": 0, "pending_by_stage_reason": {}},
    }
    render.status(data)
    out = capsys.readouterr().out
    assert "[b]run[/b]" in out and "[cell error]" in out and "[link=x]y" in out and "[i]x[/i]" in out
