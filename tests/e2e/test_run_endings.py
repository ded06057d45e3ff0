"""Every way a run ends is recorded: SIGTERM and SIGINT before the process exits, SIGKILL by the next command.

Each case holds a real run (the demo API, SQLite; one case on PostgreSQL for its advisory-lock claims) at an
injection point of one stage, stops it, and checks what an auditor relies on: the run's row, its claim, the
banner in the stage's notebook, the HTML, ``metrics.json``, the ledger entry (``report verify``), the index
entry, and a stderr without a traceback.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from eventpipe.storage.lock import HOLDER_KEEPALIVE, Claim, WindowLocks
from eventpipe.storage.store import Store
from support import HOUR, NOW, Project, query, runs

STAGE_OF = {"extract.page": "extract", "transform.chunk": "transform_quality", "load.before_commit": "load"}
NOTEBOOK = {"extract": "01_extract", "transform_quality": "02_transform_quality", "load": "03_load"}
SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT, "SIGKILL": signal.SIGKILL}
CASES = [(s, p) for s in SIGNALS for p in STAGE_OF]


def _live_claims(project: Project) -> list[str]:
    store = Store(project.settings())
    try:
        return [c.run_id for c in WindowLocks(store).live_claims()]
    finally:
        store.dispose()


def _claim_records(project: Project) -> int:
    """Claims recorded, dead or alive: rows of run_locks (PostgreSQL) or files in <db>.windows (SQLite)."""
    if project.database_url.startswith("sqlite"):
        folder = project.database_url.split("///", 1)[1] + ".windows"
        return len([p for p in os.listdir(folder) if p.endswith(".json")]) if os.path.isdir(folder) else 0
    return query(project.database_url, "SELECT count(*) FROM run_locks")[0][0]


def _assert_no_traceback(err: str) -> None:
    assert "Traceback" not in err, err
    assert "Task exception was never retrieved" not in err, err
    assert "DeadKernelError" not in err, err


def _assert_reported(project: Project, run_id: str, stage: str, failure_class: str) -> None:
    """The run's folder holds everything its audit trail writes, and says how and where it ended."""
    folder = project.reports / run_id
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "failed"
    assert metrics["error"]["class"] == failure_class and metrics["error"]["stage"] == stage
    notebook = folder / f"{NOTEBOOK[stage]}.ipynb"
    assert "eventpipe-failure" in notebook.read_text(), f"no banner in {notebook.name}"
    assert failure_class in (folder / f"{NOTEBOOK[stage]}.html").read_text()
    for name in ("run.html", "ledger.json", "metrics.prom", "run.log"):
        assert (folder / name).is_file(), name
    assert run_id in (project.reports / "index.html").read_text()
    assert not list(project.reports.rglob("*.tmp"))
    ledger = json.loads((folder / "ledger.json").read_text())
    assert "metrics.json" in ledger["files_sha256"]
    assert query(project.database_url, f"SELECT ledger_seq FROM pipeline_runs WHERE run_id = '{run_id}'")[0][
        0
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("name,point", CASES, ids=[f"{s}-{STAGE_OF[p]}" for s, p in CASES])
def test_every_ending_in_every_stage_is_recorded(project, api, name, point, capsys, caplog):
    sig = SIGNALS[name]
    stage = STAGE_OF[point]
    proc = project.spawn_held(f"{point}=sleep:60", "run")
    (held,) = runs(project.database_url)

    # a command that opens the database while the run is alive takes nothing from it
    assert project.cli("status") == 0
    assert runs(project.database_url)[0]["status"] == "running"
    assert _live_claims(project) == [held["run_id"]]

    if sig == signal.SIGKILL:
        os.killpg(proc.pid, signal.SIGKILL)  # the runner (its kernel, in a session of its own, follows it)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        assert runs(project.database_url)[0]["status"] == "running"  # nothing could record it yet
        assert _claim_records(project) == 1  # its claim's record is still there, its lock gone with it
        capsys.readouterr()
        assert project.cli("status", "--json") == 0  # the next command that opens the database
        out, _ = capsys.readouterr()
        assert f"run {held['run_id']} was left running by a dead process" in caplog.text
        failure_class = "interrupted"
    else:
        proc.send_signal(sig)  # the runner only, as `kill` or an orchestrator would
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + sig, err
        _assert_no_traceback(err)
        last = err.strip().splitlines()[-1]
        assert last == (
            f"error: terminated by {name}: run {held['run_id']} was recorded as failed (terminated) during "
            f"stage {stage}; the next run re-reads its window"
        )
        failure_class = "terminated"
        capsys.readouterr()
        assert project.cli("status", "--json") == 0
        out, _ = capsys.readouterr()

    row = runs(project.database_url)[0]
    assert (row["status"], row["failure_class"], row["stage"]) == ("failed", failure_class, stage)
    assert [r["status"] for r in json.loads(out)["runs"]] == ["failed"]  # status shows it as it ended
    assert _claim_records(project) == 0 and _live_claims(project) == []
    assert query(project.database_url, "SELECT count(*) FROM analytics")[0][0] == 0
    _assert_reported(project, held["run_id"], stage, failure_class)
    capsys.readouterr()
    assert project.cli("report", "verify") == 0, capsys.readouterr().out


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_killed_run_on_postgresql_loses_its_claim_and_gets_its_report_from_the_next_report(project, api):
    proc = project.spawn_held("load.before_commit=sleep:60", "run")
    (held,) = runs(project.database_url)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert _claim_records(project) == 1  # the row of its claim; the server dropped its advisory lock
    assert project.cli("report") == 0  # `report` opens the database too
    row = runs(project.database_url)[0]
    assert (row["status"], row["failure_class"], row["stage"]) == ("failed", "interrupted", "load")
    assert _claim_records(project) == 0
    _assert_reported(project, held["run_id"], "load", "interrupted")
    assert project.cli("report", "verify") == 0


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_claim_holder_asks_the_server_to_probe_its_connection(project):
    """A lost machine never closes its connection: the server's keepalive probes drop its claim in about a
    minute (30 s idle, 3 probes 10 s apart), instead of the operating system's two hours."""
    store = Store(project.settings())
    store.create_schema()
    locks = WindowLocks(store)
    try:
        with locks.backend.critical_section() as section:
            held = section.record(Claim("r1", NOW - HOUR, NOW))
        try:
            for name, value in HOLDER_KEEPALIVE.items():
                assert held.conn.exec_driver_sql(f"SHOW {name}").scalar() == str(value)
        finally:
            locks.backend.release(held)
    finally:
        store.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_sigterm_after_the_load_committed_leaves_the_run_succeeded(project, api):
    proc = project.spawn_held("load.after_commit=sleep:60", "run")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err  # the run loaded: a signal after the commit cannot undo it
    _assert_no_traceback(err)
    assert "stage load stopped after its transaction committed" in err
    (row,) = runs(project.database_url)
    assert (row["status"], row["failure_class"]) == ("succeeded", None)
    assert query(project.database_url, "SELECT count(*) FROM analytics")[0][0] == row["loaded"] > 0
    metrics = json.loads((project.reports / row["run_id"] / "metrics.json").read_text())
    assert metrics["status"] == "succeeded" and metrics["counts"]["loaded"] == row["loaded"]
    assert (project.reports / row["run_id"] / "ledger.json").is_file()
    assert project.cli("report", "verify") == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_sigterm_stops_a_parallel_backfill_and_each_partition_in_flight_is_recorded(project, history):
    proc = project.spawn_held(
        "transform.chunk=sleep:60",
        "backfill",
        "--start",
        "2024-05-01",
        "--end",
        "2024-05-04",
        "--workers",
        "2",
    )
    proc.send_signal(signal.SIGTERM)  # the parent only: it passes the signal on to its workers
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 143, err
    _assert_no_traceback(err)
    rows = runs(project.database_url)
    assert 1 <= len(rows) <= 2  # the third partition never started
    for row in rows:
        assert (row["status"], row["failure_class"]) == ("failed", "terminated"), row
        assert (project.reports / row["run_id"] / "ledger.json").is_file()
    assert _claim_records(project) == 0
