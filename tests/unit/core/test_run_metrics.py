"""RunMetrics: metrics.json read and written back with the same keys, in the same order and shapes."""

from __future__ import annotations

import json

from eventpipe.core.counts import RunCounts
from eventpipe.core.run_metrics import RunError, RunMetrics

COUNTS = {
    "extracted": 10,
    "rejected_transform": 1,
    "duplicates": 1,
    "outside_window": 0,
    "transformed": 8,
    "passed": 7,
    "rejected_quality": 1,
    "loaded": 7,
    "inserted": 5,
    "updated": 2,
    "unchanged": 0,
    "dead_letters_new": 2,
    "dead_letters_seen": 0,
}
FILE = {
    "run_id": "20261202T000000-incremental-abcdef",
    "kind": "incremental",
    "status": "failed",
    "window": {"since": "2026-11-25T00:53:00Z", "until": "2026-12-02T00:53:00Z"},
    "counts": COUNTS,
    "pass_rate": 0.875,
    "stage_seconds": {"extract": 1.25, "transform_quality": 2.5, "load": 0.5},
    "duration_s": 4.5,
    "started_at": "2026-12-02T00:53:01Z",
    "finished_at": "2026-12-02T00:53:06Z",
    "stages": {"transform_quality": {"reasons": {"bad": 1}, "per_hour": {"2026-11-25T01:00:00Z": 7}}},
    "report_dir": "reports/20261202T000000-incremental-abcdef",
    "database": "postgresql://u:***@h/db",
    "watermark": None,
    "error": {"stage": "load", "class": "cell error", "detail": "boom"},
    "ledger": {"code": {"git_commit": "a" * 40, "dirty": False}, "params": {"x": 1}},
}


def _text(d: dict) -> str:
    return json.dumps(d, indent=2, default=str)


def test_a_file_round_trips_byte_for_byte():
    m = RunMetrics.from_json(json.loads(_text(FILE)))
    assert m.counts == RunCounts(**COUNTS) and m.error == RunError("load", "cell error", "boom")
    assert _text(m.to_json()) == _text(FILE)


def test_a_run_that_stopped_early_lists_only_the_counts_it_reached():
    m = RunMetrics.with_counts(
        {"extracted": 5, "stage": "extract", "pages": 2}, run_id="r", kind="k", status="failed"
    )
    assert m.to_json()["counts"] == {"extracted": 5}
    assert RunMetrics.from_json({"run_id": "r", "counts": {}}).known_counts() == {}


def test_error_and_ledger_are_written_only_when_there_is_one():
    m = RunMetrics("r", "incremental", "succeeded")
    assert "error" not in m.to_json() and "ledger" not in m.to_json()
    assert list(m.to_json()) == list(FILE)[:-2]


def test_keys_it_does_not_know_are_kept(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(_text({**FILE, "future": {"a": 1}}))
    assert RunMetrics.read(path).to_json()["future"] == {"a": 1}


def test_lateness_is_written_when_measured_and_read_back():
    late = {
        "measure": "arrived at or after the window's end",
        "at": "2026-12-02T00:00:00Z",
        "late_rows": 7,
        "lag_rows": 7,
        "lag_p50_s": 180.5,
        "lag_p99_s": 840.0,
        "lag_max_s": 900.0,
    }
    m = RunMetrics.from_json({**FILE, "lateness": late, "future": 1})
    assert m.lateness is not None and m.lateness.late_rows == 7
    assert m.to_json()["lateness"] == late and m.to_json()["future"] == 1
    assert "lateness" not in RunMetrics("r", "backfill", "succeeded").to_json()
