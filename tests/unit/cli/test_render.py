"""The command line's tables read at 80 columns; progress bars only on a terminal; JSON log lines."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import pytest
from rich.console import Console

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


def test_progress_bars_only_on_a_terminal(tmp_path: Path):
    with progress.backfill_bar(3, enabled=False) as on_result:
        assert on_result is None
    with progress.backfill_bar(2, enabled=True) as on_result:
        d = datetime(2024, 5, 1, tzinfo=UTC)
        on_result(PartitionResult(d, d, "ok"))
        on_result(PartitionResult(d, d, "failed"))
    f = tmp_path / "extract.progress.json"
    f.write_text(json.dumps({"pages": 3, "records": 300, "done": True}))
    with progress.extract_bar(f, enabled=True, every_s=0.01):
        pass
    with progress.extract_bar(f, enabled=False):
        pass


def test_json_log_lines():
    record = logging.LogRecord("eventpipe.x", logging.WARNING, __file__, 1, "page %d failed", (3,), None)
    line = json.loads(JsonFormatter().format(record))
    assert (
        line["level"] == "WARNING" and line["logger"] == "eventpipe.x" and line["message"] == "page 3 failed"
    )
    assert line["time"].endswith("+00:00")
