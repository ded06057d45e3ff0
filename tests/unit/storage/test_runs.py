"""RunRecords: every write to a pipeline_runs row, inside the caller's transaction, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest

from eventpipe.settings import Secret, load_settings, normalise_database_url
from eventpipe.storage.runs import AUDIT_INCOMPLETE, ERROR_LIMIT, INTERRUPTED, RunNotRunning
from eventpipe.storage.store import Store

SINCE = datetime(2024, 5, 1, tzinfo=timezone.utc)
UNTIL = datetime(2024, 5, 2, tzinfo=timezone.utc)


@pytest.fixture
def store(database_url):
    settings = load_settings(None, [], env={})
    s = Store(dataclasses.replace(settings, database_url=Secret(normalise_database_url(database_url))))
    s.create_schema()
    yield s
    s.dispose()


def _row(store: Store, run_id: str) -> dict:
    return store.run_entry(run_id)


def _start(store: Store, run_id: str, kind: str, **kw) -> None:
    with store.engine.begin() as conn:
        store.records.start(conn, run_id, kind, SINCE, UNTIL, f"reports/{run_id}", **kw)


def _resume(store: Store, run_id: str) -> float:
    with store.engine.begin() as conn:
        return store.records.resume(conn, run_id, "airflow", SINCE, UNTIL, f"reports/{run_id}")


def test_a_started_run_is_running_and_a_failed_one_keeps_where_it_stopped(store):
    _start(store, "r1", "backfill", parent_run_id="p")
    row = _row(store, "r1")
    assert row["status"] == "running" and row["parent_run_id"] == "p" and row["pid"] and row["host"]
    store.fail_run("r1", "load", "cell error", "x" * (ERROR_LIMIT + 10))
    row = _row(store, "r1")
    assert (row["status"], row["stage"], row["failure_class"]) == ("failed", "load", "cell error")
    assert len(row["error"]) == ERROR_LIMIT and row["duration_s"] >= 0 and row["finished_at"]


def test_a_resumed_run_is_running_again_with_its_failure_cleared(store):
    _start(store, "r1", "airflow")
    store.fail_run("r1", "transform_quality", "terminated", "stopped")
    assert _resume(store, "r1") >= 0
    row = _row(store, "r1")
    assert row["status"] == "running" and row["error"] is None and row["stage"] is None
    assert _resume(store, "elsewhere") >= 0  # its first stage ran where no row was written
    assert _row(store, "elsewhere")["status"] == "running"


def test_a_finish_belongs_to_the_callers_transaction(store):
    _start(store, "r1", "incremental")
    with pytest.raises(RuntimeError):
        with store.engine.begin() as conn:
            store.records.finish(conn, "r1", {"loaded": 3, "kind": "incremental", "not_a_column": 1})
            raise RuntimeError("the load's transaction rolls back")
    assert _row(store, "r1")["status"] == "running"
    with store.engine.begin() as conn:
        store.records.finish(conn, "r1", {"loaded": 3, "kind": "incremental"})
    row = _row(store, "r1")
    assert row["status"] == "succeeded" and row["loaded"] == 3 and row["duration_s"] >= 0


def test_a_notebook_run_by_hand_gets_a_row_when_it_finishes(store):
    with store.engine.begin() as conn:
        store.records.finish(conn, "by-hand", {"loaded": 0})
    assert (_row(store, "by-hand")["kind"], _row(store, "by-hand")["status"]) == ("manual", "succeeded")


def test_only_runs_still_running_are_marked_interrupted(store):
    for rid, kind in (("dead", "backfill"), ("done", "backfill"), ("orchestrated", "airflow")):
        _start(store, rid, kind)
    store.fail_run("done", None, "runner error", "no")
    with store.reader.connect() as conn:
        assert store.records.running(conn, except_kinds=("airflow",)) == ["dead"]
    with store.engine.begin() as conn:
        store.records.interrupt(conn, ["dead", "done"])
    assert (_row(store, "dead")["failure_class"], _row(store, "dead")["error"]) == (
        "interrupted",
        INTERRUPTED,
    )
    assert _row(store, "done")["failure_class"] == "runner error"
    assert _row(store, "orchestrated")["status"] == "running"


def test_a_ledger_entry_reads_back_as_it_was_stored(store):
    _start(store, "r1", "incremental")
    store.record_ledger(
        "r1",
        {
            "code": {"git_commit": "abc", "dirty": True},
            "notebooks_sha256": {"01_extract.ipynb": "f" * 64},
            "reports_sha256": {},
            "params": {"a": [1, 2]},
            "params_sha256": "0" * 64,
            "user": "me",
            "host": "h",
        },
    )
    row = _row(store, "r1")
    assert (row["code_version"], row["code_dirty"], row["run_user"]) == ("abc", True, "me")
    assert row["params"] == {"a": [1, 2]} and row["notebooks_sha256"] == {"01_extract.ipynb": "f" * 64}


def test_last_success_is_the_newest_succeeded_run_of_that_kind(store):
    assert store.last_success("incremental") is None
    for run_id in ("old", "new"):
        _start(store, run_id, "incremental")
        with store.engine.begin() as conn:
            store.records.finish(conn, run_id, {})
    _start(store, "other-kind", "backfill")
    with store.engine.begin() as conn:
        store.records.finish(conn, "other-kind", {})
    _start(store, "failed", "incremental")
    store.fail_run("failed", "load", "cell error", "boom")
    newest = _row(store, "new")["finished_at"]
    assert store.last_success("incremental").isoformat() == newest
    assert store.last_success("replay") is None


def test_nothing_after_a_committed_load_makes_the_run_a_failure(store):
    _start(store, "r1", "incremental")
    with store.engine.begin() as conn:
        store.records.finish(conn, "r1", {"loaded": 3})
    assert store.fail_run("r1", "load", "terminated", "SIGTERM after the commit") is False
    row = _row(store, "r1")
    assert (row["status"], row["failure_class"], row["loaded"]) == ("succeeded", None, 3)


def test_a_load_never_finishes_a_run_that_is_no_longer_running(store):
    """An orphaned kernel whose run was marked interrupted meanwhile: its load rolls back, nothing lands."""
    _start(store, "r1", "incremental")
    with store.engine.begin() as conn:
        store.records.interrupt(conn, ["r1"])
    with pytest.raises(RunNotRunning, match="recorded as failed \\(interrupted\\)"):
        with store.engine.begin() as conn:
            store.records.finish(conn, "r1", {"loaded": 3})
    assert (_row(store, "r1")["status"], _row(store, "r1")["loaded"]) == ("failed", None)
    with store.engine.begin() as conn:  # a hand run's row may be finished again (03 executed twice)
        store.records.finish(conn, "by-hand", {"loaded": 1})
        store.records.finish(conn, "by-hand", {"loaded": 1})
    assert _row(store, "by-hand")["status"] == "succeeded"


def test_an_audit_problem_is_a_flag_on_a_succeeded_run_until_cleared(store):
    _start(store, "loaded", "incremental")
    _start(store, "dead", "incremental")
    with store.engine.begin() as conn:
        store.records.finish(conn, "loaded", {"loaded": 3})
        store.records.interrupt(conn, ["dead"])
    store.flag_audit("loaded", "metrics.json not written (No space left on device)")
    store.flag_audit("dead", "a failed run is not flagged: its class says how it failed")
    row = _row(store, "loaded")
    assert (row["status"], row["failure_class"]) == ("succeeded", AUDIT_INCOMPLETE)
    assert _row(store, "dead")["failure_class"] == "interrupted"
    assert sorted(store.unfinished_audits()) == ["dead", "loaded"]
    store.clear_audit("loaded")
    row = _row(store, "loaded")
    assert (row["status"], row["failure_class"], row["error"]) == ("succeeded", None, None)
    assert store.unfinished_audits() == ["dead"]
