"""Faults the pipeline must survive: each run ends exact (or fails cleanly and the rerun is exact)."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import nbformat
import psutil
import pytest

from eventpipe.demo.faults import FaultPlan
from support import API_KEY, NOW, expected_table, query, runs, table_rows

FIXED_SINCE = (NOW - timedelta(hours=7)).isoformat()
FAST_RETRY = ["-p", "api.backoff_initial_s=0.01", "-p", "api.backoff_max_s=0.5", "-p", "api.per_page=25"]


def assert_exact(project, api):
    r = runs(project.database_url)[-1]
    assert r["status"] == "succeeded", r
    assert table_rows(project.database_url) == expected_table(api, r["window_since"], r["window_until"])


def banner(project, run_id: str, notebook: str) -> str:
    nb = nbformat.read(str(project.reports / run_id / notebook), as_version=4)
    return nb.cells[0].source


@pytest.mark.parametrize(
    "faults",
    [
        ("429", "429", "429"),  # a 429 storm, Retry-After in seconds
        ("429date",),  # Retry-After as an HTTP date
        ("500", "502", "503", "504"),  # 5xx bursts
        ("drop",),
        ("truncate",),
        ("repeat",),
    ],
)
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_source_faults_are_retried_and_the_table_is_exact(project, api, faults):
    api.server.faults = FaultPlan(faults, every=2, retry_after="0")
    assert project.cli("run", *FAST_RETRY) == 0
    assert api.server.faults_served
    assert_exact(project, api)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_retry_after_zero_and_slow_pages(project, api):
    api.server.faults = FaultPlan(("429", "slow"), every=3, retry_after="0", slow_s=1.5)
    assert project.cli("run", *FAST_RETRY, "-p", "api.timeout_s=0.5") == 0
    assert "slow" in api.server.faults_served
    assert_exact(project, api)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_empty_last_page_is_the_end(project, api):
    api.server.lazy_has_more = True
    assert project.cli("run", "-p", "api.per_page=1") == 0  # every page is full, so the last one is empty
    assert_exact(project, api)


def test_retries_exhausted_fail_the_run_cleanly_and_the_rerun_is_exact(project, api):
    api.server.faults = FaultPlan(("503",), every=1)
    assert project.cli("run", *FAST_RETRY, "-p", "api.max_retries=2") == 1
    failed = runs(project.database_url)[-1]
    assert failed["status"] == "failed" and failed["stage"] == "extract"
    assert "RetriesExhausted" in failed["error"] and "503" in failed["error"]
    assert "FAILED in stage <code>extract</code>" in banner(project, failed["run_id"], "01_extract.ipynb")
    assert query(project.database_url, "SELECT count(*) FROM pipeline_state")[0][0] == 0
    api.server.faults = FaultPlan()
    assert project.cli("run", *FAST_RETRY) == 0
    assert_exact(project, api)


def test_wrong_key_fails_at_once_and_never_shows_the_key(project, api, monkeypatch, capsys):
    monkeypatch.setenv("API_KEY", "sk-WRONG-a1b2c3d4e5")
    assert project.cli("run") == 1
    err = capsys.readouterr().err
    failed = runs(project.database_url)[-1]
    assert "the API rejected the key (HTTP 401)" in failed["error"]
    assert "sk-WRONG-a1b2c3d4e5" not in failed["error"] + err
    for path in project.reports.rglob("*"):
        if path.is_file():
            assert b"sk-WRONG-a1b2c3d4e5" not in path.read_bytes()


@pytest.mark.parametrize(
    "point,notebook",
    [
        ("extract.page", "01_extract.ipynb"),
        ("transform.chunk", "02_transform_quality.ipynb"),
        ("load.before_commit", "03_load.ipynb"),
    ],
)
def test_an_exception_in_each_notebook_fails_the_run_with_a_banner(
    project, api, monkeypatch, point, notebook
):
    monkeypatch.setenv("EVENTPIPE_INJECT", f"{point}=raise")
    assert project.cli("run") == 1
    failed = runs(project.database_url)[-1]
    assert failed["status"] == "failed" and failed["failure_class"] == "cell error"
    assert "InjectedFault" in failed["error"]
    assert "cell error" in banner(project, failed["run_id"], notebook)
    assert query(project.database_url, "SELECT count(*) FROM analytics")[0][0] == 0
    monkeypatch.delenv("EVENTPIPE_INJECT")
    assert project.cli("run") == 0
    assert_exact(project, api)


def test_a_dead_kernel_is_reported_as_such(project, api, monkeypatch):
    monkeypatch.setenv("EVENTPIPE_INJECT", "transform.chunk=exit")
    assert project.cli("run") == 1
    failed = runs(project.database_url)[-1]
    assert failed["failure_class"] == "dead kernel" and failed["stage"] == "transform_quality"
    assert "dead kernel" in banner(project, failed["run_id"], "02_transform_quality.ipynb")


def test_a_cell_over_the_timeout_is_reported_as_a_timeout(project, api, monkeypatch):
    monkeypatch.setenv("EVENTPIPE_INJECT", "extract.page=sleep:30")
    started = time.monotonic()
    assert project.cli("run", "-p", "runner.cell_timeout_s=3") == 1
    assert time.monotonic() - started < 60
    failed = runs(project.database_url)[-1]
    assert failed["failure_class"] == "timeout" and failed["stage"] == "extract"
    assert "timeout" in banner(project, failed["run_id"], "01_extract.ipynb")


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_database_unreachable_at_start_exits_2_and_writes_nothing(
    project, api, monkeypatch, capsys, tmp_path
):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres:pw-SECRET-42@127.0.0.1:1/nowhere")
    assert project.cli("run") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot connect to the database" in err[0]
    assert "pw-SECRET-42" not in err[0] and "***" in err[0]
    assert not project.reports.exists() and not project.runs.exists()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_connection_lost_during_load_rolls_back_and_the_rerun_is_exact(project, api):
    import psycopg2

    proc = project.spawn_held(
        "load.before_commit=sleep:6", "run", "-p", f"window.initial_since={FIXED_SINCE}"
    )
    conn = psycopg2.connect(project.database_url)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'eventpipe' AND state = 'idle in transaction'"
    )
    assert cur.rowcount >= 1
    conn.close()
    assert proc.wait(timeout=120) == 1
    failed = runs(project.database_url)[-1]
    assert failed["status"] == "failed" and failed["stage"] == "load"
    assert query(project.database_url, "SELECT count(*) FROM analytics")[0][0] == 0
    assert query(project.database_url, "SELECT count(*) FROM dead_letter")[0][0] == 0
    assert project.cli("run", "-p", f"window.initial_since={FIXED_SINCE}") == 0
    assert_exact(project, api)
    assert runs(project.database_url)[-1]["window_since"] == failed["window_since"]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_statement_timeout_fails_the_load_and_the_rerun_is_exact(project, api, monkeypatch):
    monkeypatch.setenv("EVENTPIPE_INJECT", "load.before_commit=pgsleep:3")
    assert project.cli("run", "-p", "load.statement_timeout_s=1") == 1
    failed = runs(project.database_url)[-1]
    assert failed["stage"] == "load" and "statement timeout" in failed["error"]
    assert query(project.database_url, "SELECT count(*) FROM analytics")[0][0] == 0
    monkeypatch.delenv("EVENTPIPE_INJECT")
    assert project.cli("run", "-p", "load.statement_timeout_s=60") == 0
    assert_exact(project, api)


def test_unwritable_reports_folder_fails_before_any_fetch(project, api, capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    requests_before = api.server.requests
    assert project.cli("run", "-p", f"paths.reports_dir={blocker}/reports") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not writable" in err[0]
    assert api.server.requests == requests_before


def test_sigterm_marks_the_run_failed_and_the_rerun_is_exact(project, api):
    proc = project.spawn_held("transform.chunk=sleep:20", "run", "-p", f"window.initial_since={FIXED_SINCE}")
    proc.send_signal(signal.SIGTERM)  # the runner only; it shuts its kernel down
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143  # 128 + SIGTERM
    assert "terminated by SIGTERM" in err
    failed = runs(project.database_url)[-1]
    assert failed["status"] == "failed" and failed["failure_class"] == "terminated"
    assert project.cli("run", "-p", f"window.initial_since={FIXED_SINCE}") == 0
    assert_exact(project, api)


def test_recognisable_secrets_appear_in_nothing_written(project, api, monkeypatch, tmp_path, capfd):
    """The key and the database password never reach a notebook, log, metrics file or table."""
    password = "pw-SECRET-9f8e7d"
    url = project.database_url
    if url.startswith("postgresql"):
        url = url.replace("postgresql://postgres@", f"postgresql://postgres:{password}@")  # trust auth
        monkeypatch.setenv("DATABASE_URL", url)
    assert project.cli("run", "-p", "runner.keep_runs=true") == 0
    assert list(
        project.runs.glob("*/settings.json")
    )  # the resolved settings the notebooks read are searched too
    monkeypatch.setenv("EVENTPIPE_INJECT", "load.before_commit=raise")
    assert project.cli("run") == 1  # a failed run's report and error too
    out, err = capfd.readouterr()
    for secret in (API_KEY, password):
        assert secret not in out and secret not in err
        for path in [*project.reports.rglob("*"), *project.runs.rglob("*")]:
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
        for table in ("analytics", "pipeline_runs", "pipeline_state", "dead_letter"):
            for row in query(project.database_url, f"SELECT * FROM {table}"):
                assert secret not in repr(row), table


def _transform_workers(pid: int) -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process(pid).children(recursive=True)
        if "multiprocessing.spawn" in " ".join(p.cmdline())
    ]


def test_a_killed_kernel_leaves_no_transform_worker_behind(project, api):
    """The transform's worker processes end with the kernel that started them, however it ends; the rerun
    is exact."""
    small = ["-p", "load.batch_size=20", "-p", "api.per_page=10", "-p", "runner.transform_workers=3"]
    proc = project.spawn_held(
        "transform.chunk=sleep:30", "run", "-p", f"window.initial_since={FIXED_SINCE}", *small
    )
    workers = _transform_workers(proc.pid)
    assert len(workers) >= 2, [w.cmdline() for w in workers]
    kernel = workers[0].parent()
    kernel.kill()
    proc.communicate(timeout=120)
    assert proc.returncode == 1
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, [w.cmdline() for w in alive]
    assert project.cli("run", "-p", f"window.initial_since={FIXED_SINCE}", *small) == 0
    assert_exact(project, api)
