"""Airflow 3, in process: ``dag.test()`` of the real DAG file for one data interval (``make test`` tier).

Airflow runs in its own venv (``make airflow``), driven from here through a subprocess;
its tasks run the stages in this interpreter (the project's). The pipeline writes to
PostgreSQL, Airflow's own metadata lives in a SQLite file (``dag.test`` needs no server).
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pytest

from airflow_harness import AIRFLOW_PY, ROOT, Airflow
from eventpipe.demo.data import DemoConfig
from eventpipe.orchestration.failures import FAILURE_BANNER
from support import airflow_python, expected_table, query, runs, start_api, table_rows

DAY = datetime(2024, 5, 2, tzinfo=timezone.utc)  # dag.test(logical_date=DAY) loads [DAY - 1 day, DAY)
NOTEBOOKS = ("01_extract.ipynb", "02_transform_quality.ipynb", "03_load.ipynb")

DRIVER = """
import runpy, sys
from datetime import datetime
dag = runpy.run_path(sys.argv[1])["dag"]
run = dag.test(logical_date=datetime.fromisoformat(sys.argv[2]))
print("DAG RUN STATE", run.state)
"""


@pytest.fixture(scope="session")
def airflow_venv() -> Path:
    return airflow_python("the Airflow tests")


@pytest.fixture
def history():
    api = start_api(DemoConfig(start=datetime(2024, 4, 29, tzinfo=timezone.utc), events_per_hour=20))
    yield api
    api.server.stop()


@pytest.fixture
def deployment(airflow_venv, tmp_path, pg_fresh_url, history) -> Airflow:
    """An Airflow home with a migrated SQLite metadata DB; the pipeline's folders and database are the test's."""
    params = tmp_path / "params.yaml"
    params.write_text(f"paths:\n  reports_dir: {tmp_path / 'reports'}\n  runs_dir: {tmp_path / 'runs'}\n")
    af = Airflow(
        tmp_path / "airflow",
        f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}",
        {
            "API_BASE_URL": history.url,
            "API_KEY": history.key,
            "DATABASE_URL": pg_fresh_url,
            "EVENTPIPE_PARAMS": str(params),
            "EVENTPIPE_RETRIES": "1",
            "EVENTPIPE_RETRY_DELAY_S": "1",
        },
    )
    af.migrate()
    return af


def dag_test(af: Airflow, logical_date: datetime, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(AIRFLOW_PY), "-c", DRIVER, str(ROOT / "dags" / "eventpipe.py"), logical_date.isoformat()],
        env={**af.env, **env},
        cwd=af.home,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_dag_test_loads_one_data_interval_like_a_cli_run(deployment, history, pg_fresh_url, tmp_path):
    proc = dag_test(deployment, DAY)
    assert "DAG RUN STATE success" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-4000:]
    since, until = datetime(2024, 5, 1, tzinfo=timezone.utc), DAY
    [run] = runs(pg_fresh_url)
    assert (run["kind"], run["status"], run["window_since"], run["window_until"]) == (
        "airflow",
        "succeeded",
        since,
        until,
    )
    assert run["run_id"] == "eventpipe-20240501T000000Z-20240502T000000Z"  # the same on every retry
    assert table_rows(pg_fresh_url) == expected_table(history, since, until)
    report = tmp_path / "reports" / run["run_id"]
    names = {p.name for p in report.iterdir()}  # the CLI's layout: notebooks, their HTML, the audit files
    assert {*NOTEBOOKS, "metrics.json", "metrics.prom", "run.log"} <= names
    assert {n.replace(".ipynb", ".html") for n in NOTEBOOKS} <= names
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["status"] == "succeeded" and metrics["kind"] == "airflow"
    assert metrics["counts"]["loaded"] == len(table_rows(pg_fresh_url)) == run["loaded"]
    assert set(metrics["stage_seconds"]) == {"extract", "transform_quality", "load"}
    for name in NOTEBOOKS:
        nb = nbformat.read(report / name, as_version=4)
        # every task, in a process of its own, gave its notebook the run's one settings file
        settings_file = tmp_path / "runs" / run["run_id"] / "settings.json"
        assert nb.metadata.papermill.parameters == {"settings_file": str(settings_file)}
        assert not any(FAILURE_BANNER in c.metadata.get("tags", []) for c in nb.cells)
    assert not (tmp_path / "runs" / run["run_id"]).exists()  # removed after success, as after a CLI run
    assert history.key not in (report / "run.log").read_text()


def test_a_load_that_crashes_mid_transaction_is_retried_by_airflow_and_converges(
    deployment, history, pg_fresh_url, tmp_path
):
    armed = tmp_path / "armed"
    armed.write_text("")  # one shot: the first try's kernel dies before the load commits, the retry succeeds
    proc = dag_test(
        deployment, DAY, EVENTPIPE_INJECT="load.before_commit=exit", EVENTPIPE_INJECT_ARMED=str(armed)
    )
    out = proc.stdout + proc.stderr
    assert "DAG RUN STATE success" in proc.stdout, out[-6000:]
    assert not armed.exists()
    assert "dead kernel" in out  # the first try failed as the CLI runner classes it
    since, until = datetime(2024, 5, 1, tzinfo=timezone.utc), DAY
    [run] = runs(pg_fresh_url)
    assert run["status"] == "succeeded"
    assert table_rows(pg_fresh_url) == expected_table(history, since, until)
    dead, distinct = query(pg_fresh_url, "SELECT count(*), count(DISTINCT record_hash) FROM dead_letter")[0]
    assert dead == distinct == run["rejected_transform"] + run["rejected_quality"]
    assert (
        query(pg_fresh_url, "SELECT max(attempts) FROM dead_letter")[0][0] == 1
    )  # the crashed try left nothing


def test_a_failed_stage_leaves_the_run_failed_with_the_runners_class_and_banner(
    deployment, pg_fresh_url, tmp_path
):
    proc = dag_test(deployment, DAY, EVENTPIPE_INJECT="load.before_commit=raise", EVENTPIPE_RETRIES="0")
    assert "DAG RUN STATE failed" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-4000:]
    [run] = runs(pg_fresh_url)
    assert (run["status"], run["stage"], run["failure_class"]) == ("failed", "load", "cell error")
    assert "InjectedFault" in run["error"]
    assert query(pg_fresh_url, "SELECT count(*) FROM analytics")[0][0] == 0
    nb = nbformat.read(tmp_path / "reports" / run["run_id"] / "03_load.ipynb", as_version=4)
    assert FAILURE_BANNER in nb.cells[0].metadata.get("tags", [])
    assert "FAILED in stage <code>load</code>: cell error." in nb.cells[0].source  # the CLI runner's banner
    metrics = json.loads((tmp_path / "reports" / run["run_id"] / "metrics.json").read_text())
    assert metrics["error"]["class"] == "cell error"
