"""api.concurrency end to end on PostgreSQL: the same table, dead letters and counts at 1, 4 and 8 requests in
flight, under faults, with copies of an event in different slices; a run killed mid-extract converges."""

from __future__ import annotations

import os
import re
import signal
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest

from eventpipe.demo.api import DemoConfig, FaultPlan
from support import Project, expected_table, query, runs, start_api, table_rows, wait_for_mark

HOUR = timedelta(hours=1)
FAST = ["-p", "api.backoff_initial_s=0.02", "-p", "api.backoff_max_s=0.2", "-p", "api.per_page=20"]
FAST += ["-p", "quality.min_pass_rate=0.5"]  # 5% dirty records, drawn at random: a draw can pass under 95%
# a "too far ahead" reason names the minute the run started, which differs between the runs compared
AHEAD = re.compile(r" ahead of \d{4}-\d\d-\d\dT\d\d:\d\dZ")
FAULTS = ("429", "503", "drop", "truncate", "429", "500", "502")


@pytest.fixture
def start() -> datetime:
    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - 8 * HOUR


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
    letters = sorted(
        (raw, [AHEAD.sub(" ahead of <now>", r) for r in reasons])
        for raw, reasons in query(url, "SELECT raw, reasons FROM dead_letter")
    )
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
    mark = tmp_path / "reached"
    victim = project.spawn(
        *args, env={**env, "EVENTPIPE_INJECT": "extract.page=sleep:60", "EVENTPIPE_INJECT_MARK": str(mark)}
    )
    wait_for_mark(mark, victim)
    os.killpg(victim.pid, signal.SIGKILL)  # the runner, its kernel and every worker thread, at once
    victim.communicate(timeout=60)
    assert runs(pg_fresh_url)[-1]["status"] == "running"  # what a kill leaves behind
    rerun = project.spawn(*args, env=env)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    assert table_rows(pg_fresh_url) == expected_table(dup_api, since, until)
    assert runs(pg_fresh_url)[-1]["status"] == "succeeded"
