"""Dead letters: stored once, replayed after a rule change, still-bad ones stay pending."""

from __future__ import annotations

import json
from datetime import timedelta

from support import NOW, query, runs, table_rows


def add_scroll_events(api, n: int = 3) -> list[str]:
    """Events with a type the default rules reject, inside the next run's window."""
    at = NOW - timedelta(minutes=20)
    users = []
    for i in range(n):
        t = at + timedelta(seconds=i)
        api.data.append(
            {
                "user_id": f"scroller{i}",
                "event": "Scroll",
                "timestamp": t.isoformat(),
                "properties": {"depth": i},
            },
            t,
        )
        users.append(f"scroller{i}")
    return users


def dead_letters(url: str) -> list[tuple]:
    return query(url, "SELECT raw, stage, reasons, status, attempts FROM dead_letter ORDER BY id")


def test_replay_loads_records_that_pass_under_new_rules(project, api, capsys):
    users = add_scroll_events(api)
    assert project.cli("run") == 0
    before = dead_letters(project.database_url)
    scroll = [r for r in before if "Scroll" in r[0]]
    assert len(scroll) == 3
    for _raw, stage, reasons, status, attempts in scroll:
        reasons = reasons if isinstance(reasons, list) else json.loads(reasons)
        assert stage == "quality" and status == "pending" and attempts == 1
        assert any(r.startswith("event_not_allowed") for r in reasons)
    pending_before = sum(r[3] == "pending" for r in before)

    # a dry run shows what would pass and writes nothing
    capsys.readouterr()
    allow = "quality.allowed_events=page_view,click,sign_up,purchase,logout,scroll"
    assert project.cli("replay-dlq", "--dry-run", "-p", allow) == 0
    assert "3 of" in capsys.readouterr().out
    assert dead_letters(project.database_url) == before
    n_runs = len(runs(project.database_url))

    assert project.cli("replay-dlq", "-p", allow) == 0
    replay = runs(project.database_url)[-1]
    assert len(runs(project.database_url)) == n_runs + 1
    assert replay["kind"] == "replay" and replay["status"] == "succeeded"
    assert (project.reports / replay["run_id"] / "03_load.ipynb").is_file()
    loaded = {k[0] for k in table_rows(project.database_url) if k[2] == "scroll"}
    assert loaded == set(users)
    after = dead_letters(project.database_url)
    assert len(after) == len(before)  # replay never adds rows
    for raw, _stage, _reasons, status, attempts in after:
        if "Scroll" in raw:
            assert status == "replayed"
        else:  # still bad: pending, one more attempt, reasons refreshed
            assert status == "pending" and attempts == 2
    assert sum(r[3] == "pending" for r in after) == pending_before - 3

    # a watermark is never moved by a replay
    marks = query(project.database_url, "SELECT run_id FROM pipeline_state")
    assert marks[0][0] != replay["run_id"]


def test_rerun_over_the_same_window_bumps_attempts_instead_of_adding_rows(project, api):
    fixed = ("-p", f"window.initial_since={(NOW - timedelta(hours=7)).isoformat()}")
    assert project.cli("run", *fixed) == 0
    first = dead_letters(project.database_url)
    assert (
        project.cli("run", "--full", "-p", fixed[1].replace("window.initial_since", "quality.min_timestamp"))
        == 0
    )
    second = dead_letters(project.database_url)
    assert len(second) == len(first) > 0
    assert all(r[4] == 2 for r in second)
