"""A seeded loop of SIGKILL / SIGTERM at random points: every rerun converges to the exact table.

`make test` runs a short loop (3 kills); `make test-all` runs the full one (20 kills, marked slow).
"""

from __future__ import annotations

import os
import random
import signal
import time
from datetime import timedelta

import pytest

from support import NOW, expected_table, query, runs, table_rows, wait_for_mark

POINTS = ("extract.page", "transform.chunk", "load.before_commit", None)  # None: a random moment


def kill_loop(project, api, tmp_path, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    since = (NOW - timedelta(hours=7)).isoformat()
    fixed = ("-p", f"window.initial_since={since}")
    for i in range(kills):
        point = rng.choice(POINTS)
        sig = rng.choice((signal.SIGKILL, signal.SIGTERM))
        mark = tmp_path / f"reached-{i}"
        env = {"EVENTPIPE_INJECT_MARK": str(mark)}
        if point:
            env["EVENTPIPE_INJECT"] = f"{point}=sleep:60"
        proc = project.spawn("run", *fixed, env=env)
        if point:
            wait_for_mark(mark, proc)
        else:
            time.sleep(rng.uniform(0.5, 8.0))
        if proc.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
        if sig == signal.SIGTERM:
            time.sleep(0.5)
    assert project.cli("run", *fixed) == 0
    all_runs = runs(project.database_url)
    assert all(r["status"] in ("succeeded", "failed") for r in all_runs), "a dead run was left running"
    first_since = min(r["window_since"] for r in all_runs)
    assert table_rows(project.database_url) == expected_table(api, first_since, all_runs[-1]["window_until"])
    dl = query(project.database_url, "SELECT count(*), count(DISTINCT record_hash) FROM dead_letter")[0]
    assert dl[0] == dl[1]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_random_kills_always_converge_short(project, api, tmp_path):
    kill_loop(project, api, tmp_path, kills=3, seed=7)


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgres", "sqlite"], indirect=True)
def test_random_kills_always_converge(project, api, tmp_path):
    kill_loop(project, api, tmp_path, kills=20, seed=20261125)
