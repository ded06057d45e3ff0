"""Backfill: partitions of [start, end), exact results, parallel workers, resume, and the watermark untouched."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from eventpipe.demo.faults import FaultPlan
from support import HISTORY_START, expected_table, query, runs, table_rows

START = HISTORY_START
END = datetime(2024, 5, 3, tzinfo=timezone.utc)


def test_backfill_by_day_loads_the_exact_range_and_leaves_the_watermark(project, history, capsys):
    assert project.cli("backfill", "--start", "2024-05-01", "--end", "2024-05-03") == 0
    out = capsys.readouterr().out
    assert "backfill window [2024-05-01T00:00:00Z, 2024-05-03T00:00:00Z) UTC in 2 partitions" in out
    assert table_rows(project.database_url) == expected_table(history, START, END)
    parts = runs(project.database_url)
    assert [(r["kind"], r["status"]) for r in parts] == [("backfill", "succeeded")] * 2
    assert {(r["window_since"], r["window_until"]) for r in parts} == {
        (START, datetime(2024, 5, 2, tzinfo=timezone.utc)),
        (datetime(2024, 5, 2, tzinfo=timezone.utc), END),
    }
    assert query(project.database_url, "SELECT count(*) FROM pipeline_state")[0][0] == 0
    # every partition has its own report folder
    for r in parts:
        assert (project.reports / r["run_id"] / "metrics.json").is_file()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_backfill_in_6h_chunks_with_two_workers_is_exact(project, history, capsys):
    assert (
        project.cli(
            "backfill",
            "--start",
            "2024-05-01",
            "--end",
            "2024-05-02T12:00:00",
            "--chunk",
            "6h",
            "--workers",
            "2",
        )
        == 0
    )
    end = datetime(2024, 5, 2, 12, tzinfo=timezone.utc)
    assert table_rows(project.database_url) == expected_table(history, START, end)
    assert len(runs(project.database_url)) == 6
    assert query(project.database_url, "SELECT count(*) FROM pipeline_state")[0][0] == 0


def test_backfill_resumes_failed_partitions_and_skips_succeeded_ones(project, history, capsys):
    history.server.faults = FaultPlan(("503",), every=1, limit=1)  # the very first request fails
    code = project.cli("backfill", "--start", "2024-05-01", "--end", "2024-05-03", "-p", "api.max_retries=0")
    assert code == 1
    first = runs(project.database_url)
    assert sorted(r["status"] for r in first) == ["failed", "succeeded"]
    failed = next(r for r in first if r["status"] == "failed")
    assert failed["window_since"] == START
    capsys.readouterr()

    assert project.cli("backfill", "--start", "2024-05-01", "--end", "2024-05-03") == 0
    out = capsys.readouterr().out
    assert "skipped" in out
    second = runs(project.database_url)[len(first) :]
    assert [(r["window_since"], r["status"]) for r in second] == [(START, "succeeded")]
    assert table_rows(project.database_url) == expected_table(history, START, END)

    # --rerun forces every partition again, and the table stays exact
    assert project.cli("backfill", "--start", "2024-05-01", "--end", "2024-05-03", "--rerun") == 0
    assert len(runs(project.database_url)) == len(first) + 1 + 2
    assert table_rows(project.database_url) == expected_table(history, START, END)


def test_a_timed_out_partition_does_not_hold_up_the_next_one(project, history, capsys):
    """Inline partitions share one kernel. A stage that timed out leaves that kernel busy (the cell still
    runs), so the kernel is thrown away and the next partition starts at once in a fresh one."""
    history.server.faults = FaultPlan(("slow",), every=1, limit=1, slow_s=40)  # the very first page hangs
    started = time.monotonic()
    code = project.cli(
        "backfill", "--start", "2024-05-01", "--end", "2024-05-03", "-p", "runner.cell_timeout_s=4"
    )
    elapsed = time.monotonic() - started
    assert code == 1
    parts = sorted(runs(project.database_url), key=lambda r: r["window_since"])
    assert [(r["status"], r["failure_class"]) for r in parts] == [("failed", "timeout"), ("succeeded", None)]
    assert elapsed < 30, f"the second partition waited for the stuck cell ({elapsed:.0f}s)"
    second = datetime(2024, 5, 2, tzinfo=timezone.utc)
    assert table_rows(project.database_url) == expected_table(history, second, END)
