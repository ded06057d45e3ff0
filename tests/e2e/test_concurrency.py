"""api.concurrency end to end on PostgreSQL: the same table, dead letters and counts at 1, 4 and 8 requests in
flight, under faults, with copies of an event in different slices; a run killed mid-extract converges."""

from __future__ import annotations

import os
import signal
from datetime import datetime

import psycopg2
import pytest

from eventpipe.demo.data import DemoConfig
from eventpipe.demo.faults import FaultPlan
from support import HOUR, Clock, Project, expected_table, query, runs, start_api, table_rows

FAST = ["-p", "api.backoff_initial_s=0.02", "-p", "api.backoff_max_s=0.2", "-p", "api.per_page=20"]
FAULTS = ("429", "503", "drop", "truncate", "429", "500", "502")


@pytest.fixture
def start(clock: Clock) -> datetime:
    return clock.now.replace(minute=0) - 8 * HOUR


@pytest.fixture
def dup_api(start):
    """Copies of an event arrive later in its hour with newer properties (the copy wins): with 15-minute
    slices, many copies land in another slice than the event they replace."""
    a = start_api(DemoConfig(start=start, events_per_hour=150, dirty_share=0.05, duplicate_share=0.25))
    yield a
    a.server.stop()


def _empty(url: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    conn.cursor().execute(
        "DROP TABLE IF EXISTS analytics, pipeline_runs, pipeline_state, dead_letter, eventpipe_schema_version CASCADE"
    )
    conn.close()


def _outcome(url: str) -> tuple:
    counts = query(
        url,
        "SELECT extracted, transformed, rejected_transform, duplicates, outside_window FROM pipeline_runs "
        "WHERE status = 'succeeded'",
    )
    letters = sorted(query(url, "SELECT raw, reasons FROM dead_letter"))
    return table_rows(url), letters, counts


@pytest.mark.parametrize("step", ["15m", ""])
def test_the_table_is_identical_at_concurrency_1_4_and_8_under_faults(
    dup_api, start, tmp_path, pg_fresh_url, monkeypatch, step
):
    monkeypatch.setenv("DATABASE_URL", pg_fresh_url)
    monkeypatch.setenv("API_BASE_URL", dup_api.url)
    monkeypatch.setenv("API_KEY", dup_api.key)
    since, until = start + 2 * HOUR, start + 6 * HOUR
    params = tmp_path / "sliced.yaml"
    params.write_text(f"source:\n  window: {{step: {step}}}\n" if step else "api: {}\n")
    outcomes = {}
    for c in (1, 4, 8):
        _empty(pg_fresh_url)
        dup_api.server.faults = FaultPlan(FAULTS, every=3, retry_after="0")
        project = Project(tmp_path / f"c{c}", pg_fresh_url)
        window = ["--start", since.isoformat(), "--end", until.isoformat()]
        code = project.cli("backfill", *window, "--params", str(params), *FAST, "-p", f"api.concurrency={c}")
        assert code == 0
        assert set(FAULTS) <= set(dup_api.server.faults_served)
        outcomes[c] = _outcome(pg_fresh_url)
    table, letters, counts = outcomes[1]
    assert table == expected_table(dup_api, since, until)
    assert letters and counts[0][3] > 0  # dirty records and superseded copies were there to get wrong
    assert outcomes[4] == outcomes[1]
    assert outcomes[8] == outcomes[1]


def test_a_run_killed_during_a_concurrent_extract_converges_on_rerun(dup_api, start, tmp_path, pg_fresh_url):
    since, until = start + 1 * HOUR, start + 7 * HOUR
    project = Project(tmp_path, pg_fresh_url)
    env = {"DATABASE_URL": pg_fresh_url, "API_BASE_URL": dup_api.url, "API_KEY": dup_api.key}
    dup_api.server.latency_s = 0.02  # requests are in flight when the kill comes
    params = tmp_path / "sliced.yaml"
    params.write_text("source:\n  window: {step: 30m}\n")
    args = ["backfill", "--start", since.isoformat(), "--end", until.isoformat(), "--params", str(params)]
    args += [*FAST, "-p", "api.concurrency=8"]
    victim = project.spawn_held("extract.page=sleep:60", *args, env=env)
    os.killpg(victim.pid, signal.SIGKILL)  # the runner, its kernel and every worker thread, at once
    victim.communicate(timeout=60)
    assert runs(pg_fresh_url)[-1]["status"] == "running"  # what a kill leaves behind
    rerun = project.spawn(*args, env=env)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    assert table_rows(pg_fresh_url) == expected_table(dup_api, since, until)
    assert runs(pg_fresh_url)[-1]["status"] == "succeeded"
