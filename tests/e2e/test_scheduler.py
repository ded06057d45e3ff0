"""The scheduler runs incremental runs on an interval, never overlapping, and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import time

from support import runs


def test_scheduler_runs_ticks_and_stops_on_sigterm(project, api):
    proc = project.spawn("schedule", "--every", "2s")
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                done = [r for r in runs(project.database_url) if r["status"] == "succeeded"]
            except Exception:  # tables not created yet
                done = []
            if len(done) >= 2:
                break
            time.sleep(0.5)
        assert len(done) >= 2, "the scheduler did not complete two runs"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "stopping after the current run" in err
    assert "scheduler stopped after" in err
    all_runs = runs(project.database_url)
    assert all(r["status"] == "succeeded" for r in all_runs)  # the last one was allowed to finish
    # never overlapping: each run started after the previous one finished
    from support import query

    spans = query(
        project.database_url, "SELECT started_at, finished_at FROM pipeline_runs ORDER BY started_at"
    )
    for (_s1, f1), (s2, _f2) in zip(spans, spans[1:]):
        assert f1 is not None and str(s2) >= str(f1)
