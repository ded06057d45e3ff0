"""Incremental state: the watermark, the overlap for late events, full reloads, and one writer at a time."""

from __future__ import annotations

import json
import signal
from datetime import datetime, timedelta

import pytest

from eventpipe.demo.data import Truth
from support import expected_table, query, runs, table_rows


def late_event(user: str, at: datetime) -> tuple[dict, Truth]:
    at = at.replace(microsecond=at.microsecond // 1000 * 1000)
    ms = round(at.timestamp() * 1000)
    item = {"user_id": user, "event": "Purchase", "timestamp": at.isoformat(), "properties": {"late": True}}
    return item, Truth(user, ms, "purchase", {"late": True}, None)


def test_two_incremental_runs_load_every_row_once(project, api, clock):
    assert project.cli("run") == 0
    first = runs(project.database_url)[-1]
    # new events arrive after the first run's window
    for i in range(5):
        item, truth = late_event(f"new{i}", clock.now + timedelta(milliseconds=i))
        api.data.append(item, clock.now + timedelta(milliseconds=i), truth)
    clock.advance(timedelta(seconds=1))  # the next window ends later than the appended events
    assert project.cli("run") == 0
    second = runs(project.database_url)[-1]
    assert second["window_since"] == first["window_until"] - timedelta(hours=1)
    assert table_rows(project.database_url) == expected_table(
        api, first["window_since"], second["window_until"]
    )
    assert {("new3", "purchase")} <= {(k[0], k[2]) for k in table_rows(project.database_url)}
    dl = query(project.database_url, "SELECT count(*), count(DISTINCT record_hash) FROM dead_letter")[0]
    assert dl[0] == dl[1]
    mark = query(project.database_url, "SELECT watermark FROM pipeline_state WHERE name = 'incremental'")[0][
        0
    ]
    assert mark is not None


def test_late_event_inside_the_overlap_is_picked_up_and_older_needs_full(project, api):
    assert project.cli("run") == 0
    first = runs(project.database_url)[-1]
    inside_at = first["window_until"] - timedelta(minutes=30)
    outside_at = first["window_until"] - timedelta(hours=2)
    for user, at in (("late_inside", inside_at), ("late_outside", outside_at)):
        item, truth = late_event(user, at)
        api.data.append(item, at, truth)
    assert project.cli("run") == 0
    users = {k[0] for k in table_rows(project.database_url)}
    assert "late_inside" in users
    assert "late_outside" not in users
    assert (
        project.cli("run", "--full", "-p", f"quality.min_timestamp={first['window_since'].isoformat()}") == 0
    )
    users = {k[0] for k in table_rows(project.database_url)}
    assert "late_outside" in users
    last = runs(project.database_url)[-1]
    assert table_rows(project.database_url) == expected_table(
        api, first["window_since"], last["window_until"]
    )


def test_a_second_run_while_one_is_in_progress_exits_with_a_clear_message(project, api):
    slow = project.spawn_held("load.before_commit=sleep:8", "run")
    try:
        second = project.spawn("run")
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0
        running = runs(project.database_url)[-1]["run_id"]
        assert f"another run is in progress (run_id {running})" in err
        assert slow.wait(timeout=120) == 0
    finally:
        if slow.poll() is None:
            slow.kill()
    assert len(runs(project.database_url)) == 1
    r = runs(project.database_url)[0]
    assert table_rows(project.database_url) == expected_table(api, r["window_since"], r["window_until"])


def test_wait_makes_the_second_run_wait_for_the_first(project, api):
    slow = project.spawn_held("load.before_commit=sleep:4", "run")
    second = project.spawn("run", "--wait")
    assert slow.wait(timeout=120) == 0
    assert second.wait(timeout=180) == 0
    both = runs(project.database_url)
    assert [r["status"] for r in both] == ["succeeded", "succeeded"]
    assert both[1]["window_since"] == both[0]["window_until"] - timedelta(hours=1)


@pytest.mark.parametrize("point", ["extract.page", "transform.chunk", "load.before_commit"])
def test_killed_run_is_marked_interrupted_and_the_rerun_converges(project, api, point, clock):
    import os

    first_since = (clock.now - timedelta(hours=7)).isoformat()
    fixed = ("-p", f"window.initial_since={first_since}")
    victim = project.spawn_held(f"{point}=sleep:60", "run", *fixed)
    os.killpg(victim.pid, signal.SIGKILL)  # the runner and its kernel, at once
    victim.wait(timeout=30)
    dead = runs(project.database_url)[-1]
    assert dead["status"] == "running"
    assert query(project.database_url, "SELECT count(*) FROM analytics")[0][0] == 0
    assert query(project.database_url, "SELECT count(*) FROM pipeline_state")[0][0] == 0

    assert project.cli("run", *fixed) == 0
    after = {r["run_id"]: r for r in runs(project.database_url)}
    assert after[dead["run_id"]]["status"] == "failed"
    assert after[dead["run_id"]]["failure_class"] == "interrupted"
    rerun = runs(project.database_url)[-1]
    assert rerun["window_since"] == dead["window_since"]  # the watermark did not move
    assert table_rows(project.database_url) == expected_table(
        api, rerun["window_since"], rerun["window_until"]
    )
    dl = query(
        project.database_url, "SELECT count(*), count(DISTINCT record_hash), max(attempts) FROM dead_letter"
    )[0]
    assert dl[0] == dl[1] and dl[2] == 1


def test_a_late_event_found_in_the_overlap_is_counted_late(project, api):
    """On the event clock the late rows are those the re-read overlap inserted; the contract sends no
    arrival time, so their lag is not known."""
    assert project.cli("run") == 0
    first = runs(project.database_url)[-1]
    item, truth = late_event("late_inside", first["window_until"] - timedelta(minutes=30))
    api.data.append(item, first["window_until"] - timedelta(minutes=30), truth)
    assert project.cli("run") == 0
    second = runs(project.database_url)[-1]
    metrics = json.loads((project.reports / second["run_id"] / "metrics.json").read_text())
    assert metrics["lateness"] == {
        "measure": "event time before the previous watermark",
        "at": first["window_until"].isoformat().replace("+00:00", "Z"),
        "late_rows": 1,
        "lag_rows": 0,
    }
