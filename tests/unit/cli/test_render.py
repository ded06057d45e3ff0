"""The command line's tables read at 80 columns; progress bars only on a terminal; JSON log lines."""

from __future__ import annotations

import io
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress

from eventpipe.cli import progress, render
from eventpipe.logs import JsonFormatter
from eventpipe.orchestration.backfill import PartitionResult

UTC = timezone.utc


@pytest.fixture
def screen(monkeypatch) -> io.StringIO:
    out = io.StringIO()
    monkeypatch.setattr(render, "console", lambda: Console(file=out, width=80, highlight=False))
    return out


def _lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_short_forms():
    assert render.k(950) == "950" and render.k(20_552) == "20.6k" and render.k(1_234_567) == "1.2M"
    assert render.short_id("20261202T061332-incremental-8bd636") == "8bd636"
    assert render.short_window("2026-11-25T00:53:00Z", "2026-12-02T00:53:00Z") == "11-25 00:53 → 12-02 00:53"
    assert render.short_window("2025-12-31T00:00:00Z", "2026-01-01T00:00:00Z").startswith("2025-12-31")


def test_status_fits_80_columns_with_nothing_cut(screen):
    runs = [
        {
            "run_id": f"20261202T0613{i:02d}-{kind}-{i:06x}",
            "kind": kind,
            "status": status,
            "window_since": "2026-11-25T00:53:00+00:00",
            "window_until": "2026-12-02T00:53:00+00:00",
            "extracted": 1_234_567,
            "rejected_transform": 12_000,
            "duplicates": 5,
            "transformed": 1,
            "passed": 1,
            "rejected_quality": 10_000,
            "loaded": 1_200_000,
            "pass_rate": 0.98,
            "duration_s": 12.5,
            "failure_class": "cell error" if status == "failed" else None,
            "error": "QualityGateFailed: " + "x" * 200 if status == "failed" else None,
        }
        for i, (kind, status) in enumerate(
            [
                ("incremental", "succeeded"),
                ("backfill", "failed"),
                ("replay", "running"),
                ("full", "succeeded"),
            ]
        )
    ]
    render.status(
        {
            "database": "sqlite:///x",
            "watermark": None,
            "runs": runs,
            "dead_letters": {
                "pending": 1,
                "replayed": 0,
                "discarded": 0,
                "pending_by_stage_reason": {"transform": {"user_id_missing": 1}},
            },
        }
    )
    lines = _lines(screen)
    assert all(len(line.rstrip()) <= 80 for line in lines), "\n".join(lines)
    table = "\n".join(lines)
    assert "…" not in table.split("cell error")[0]  # no cell of the table is cut
    assert "11-25 00:53 → 12-02 00:53" in table and "1.2M" in table and "98.0%" in table
    assert "000001" in table and "cell error: QualityGateFailed" in table


def test_backfill_partitions_fit_80_columns(screen):
    d = datetime(2024, 5, 1, tzinfo=UTC)
    render.partitions(
        [
            PartitionResult(
                d,
                d.replace(day=2),
                "failed",
                "20240501T000000-backfill-abcdef",
                2900,
                None,
                63,
                "StageFailed: " + "y" * 200,
            ),
            PartitionResult(d.replace(day=2), d.replace(day=3), "skipped", error="already succeeded"),
        ]
    )
    lines = _lines(screen)
    assert all(len(line.rstrip()) <= 80 for line in lines)
    assert "05-01 00:00 → 05-02 00:00" in "\n".join(lines) and "abcdef" in "\n".join(lines)


def test_progress_bars_only_on_a_terminal():
    with progress.backfill_bar(3, enabled=False) as on_result:
        assert on_result is None
    with progress.backfill_bar(2, enabled=True) as on_result:
        d = datetime(2024, 5, 1, tzinfo=UTC)
        on_result(PartitionResult(d, d, "ok"))
        on_result(PartitionResult(d, d, "failed"))


def test_stage_lines_off_a_terminal_one_plain_line_per_stage(tmp_path: Path):
    out = io.StringIO()
    with progress.stage_lines(terminal=False, out=out) as on_stage:
        on_stage("extract", "started", None, tmp_path)
        on_stage("extract", "done", {"pages": 1, "extracted": 100, "seconds": 0.51}, tmp_path)
        on_stage("transform_quality", "started", None, tmp_path)
        on_stage("transform_quality", "failed", {"seconds": 2.0}, tmp_path)
    assert _lines(out) == ["extract    1 page, 100 records  0.5s", "transform  failed after 2.0s"]


def test_stage_lines_as_log_lines_for_json_logs(tmp_path: Path):
    logged: list[str] = []
    with progress.stage_lines(terminal=True, emit=logged.append) as on_stage:  # never a live display then
        on_stage("load", "started", None, tmp_path)
        on_stage("load", "done", {"loaded": 2, "inserted": 1, "updated": 1, "seconds": 0.25}, tmp_path)
    assert logged == ["load       2 rows: 1 inserted, 1 updated, 0 unchanged  0.2s"]


def test_stage_lines_on_a_terminal_follow_the_run_folder(tmp_path: Path, monkeypatch):
    """Live: the extract line reads the pages so far from the run folder, and ends with what the stage did."""
    screen = io.StringIO()
    monkeypatch.setattr(
        progress,
        "_progress",
        lambda *c, transient: Progress(
            *c, console=Console(file=screen, width=80, force_terminal=True), transient=transient
        ),
    )
    (tmp_path / "extract.progress.json").write_text(json.dumps({"pages": 3, "records": 300, "done": False}))
    with progress.stage_lines(terminal=True, every_s=0.01) as on_stage:
        on_stage("extract", "started", None, tmp_path)
        deadline = time.monotonic() + 5
        while "3 pages, 300 records" not in screen.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
        on_stage("extract", "done", {"pages": 4, "extracted": 301, "seconds": 1.0}, tmp_path)
    shown = screen.getvalue()
    assert "extract    3 pages, 300 records" in shown
    assert "extract    4 pages, 301 records  1.0s" in shown


def test_json_log_lines():
    record = logging.LogRecord("eventpipe.x", logging.WARNING, __file__, 1, "page %d failed", (3,), None)
    line = json.loads(JsonFormatter().format(record))
    assert (
        line["level"] == "WARNING" and line["logger"] == "eventpipe.x" and line["message"] == "page 3 failed"
    )
    assert line["time"].endswith("+00:00")


def test_the_late_rows_line_sums_the_runs_and_shows_the_newest_lag():
    late = {"measure": "m", "at": "t", "late_rows": 7, "lag_rows": 7}
    runs = [
        {"lateness": {**late, "lag_p50_s": 185.0, "lag_p99_s": 845.2, "lag_max_s": 900.0}},
        {"lateness": None},
        {"lateness": {**late, "late_rows": 2, "lag_rows": 0}},
    ]
    line = render.lateness_line(runs)
    assert line == "late rows: 9 in the last 3 runs; newest lag p50 3m5s, p99 14m5s, max 15m"
    assert len(line) <= 80
    assert render.lateness_line([{"lateness": None}, {}]) is None
