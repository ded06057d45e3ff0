"""Airflow 3, in process: ``dag.test()`` of the real DAG file for one data interval (``make test`` tier).

Airflow runs in its own venv (``make airflow``), driven from here through a subprocess;
its tasks run the stages in this interpreter (the project's). The pipeline writes to
PostgreSQL, Airflow's own metadata lives in a SQLite file (``dag.test`` needs no server).
Also: two pipelines' DAGs with their secrets in Airflow connections, configuration errors
that fail once (at parse time, or without a retry), and why ``dags test`` is no way to
load one interval of a deployment.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nbformat
import pytest
from sqlalchemy import create_engine, text

from airflow_harness import AIRFLOW_PY, ROOT, Airflow
from eventpipe.demo.data import DemoConfig
from eventpipe.orchestration.failures import FAILURE_BANNER
from eventpipe.settings import normalise_database_url
from support import airflow_python, expected_table, query, runs, start_api, table_rows

# the tests' own DAG files put lib/ on the path as dags/eventpipe.py does
DAG_HEADER = f"""
import sys
from datetime import datetime, timedelta, timezone
sys.path.insert(0, {str(ROOT / "lib")!r})
from eventpipe.orchestration.integrations.airflow import eventpipe_dag
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
"""

DAY = datetime(2024, 5, 2, tzinfo=timezone.utc)  # dag.test(logical_date=DAY) loads [DAY - 1 day, DAY)
NOTEBOOKS = ("01_extract.ipynb", "02_transform_quality.ipynb", "03_load.ipynb")

DRIVER = """
import json, os, runpy, sys
from datetime import datetime
from airflow.sdk import DAG
dags = {v.dag_id: v for v in runpy.run_path(sys.argv[1]).values() if isinstance(v, DAG)}
for dag_id in sys.argv[3:]:
    run = dags[dag_id].test(logical_date=datetime.fromisoformat(sys.argv[2]))
    print("DAG RUN STATE", dag_id, run.state)
# the values of the connections the tasks read: does Airflow's secrets masker know each one?
from airflow.sdk._shared.secrets_masker import redact
for name, value in sorted(os.environ.items()):
    if name.startswith("AIRFLOW_CONN_"):
        conn = json.loads(value)
        values = [conn.get("password"), *conn.get("extra", {}).values()]
        print("MASKED", name, all(redact(v) != v for v in values if v))
"""


@pytest.fixture(scope="session")
def airflow_venv() -> Path:
    return airflow_python("the Airflow tests")


@pytest.fixture
def history():
    api = start_api(DemoConfig(start=datetime(2024, 4, 29, tzinfo=timezone.utc), events_per_hour=20))
    yield api
    api.server.stop()


@pytest.fixture(scope="session")
def migrated_db(airflow_venv, tmp_path_factory) -> Path:
    """Airflow's metadata schema in SQLite, migrated once (it takes a minute); each test gets a copy."""
    home = tmp_path_factory.mktemp("airflow-template")
    Airflow(home, f"sqlite:///{home / 'airflow.db'}", {}).migrate()
    return home / "airflow.db"


@pytest.fixture
def deployment(migrated_db, tmp_path, pg_fresh_url, history) -> Airflow:
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
    shutil.copy(migrated_db, af.home / "airflow.db")
    return af


def dag_test(
    af: Airflow,
    logical_date: datetime,
    dag_file: Path = ROOT / "dags" / "eventpipe.py",
    dag_ids: tuple[str, ...] = ("eventpipe",),
    **env: str,
) -> subprocess.CompletedProcess:
    """``dag.test(logical_date)`` of each of ``dag_ids`` in ``dag_file``, one after the other, in one process."""
    # dag.test() serializes the DAG into the metadata database only from the DAG folder
    folder = {"AIRFLOW__CORE__DAGS_FOLDER": str(dag_file.parent)}
    return subprocess.run(
        [str(AIRFLOW_PY), "-c", DRIVER, str(dag_file), logical_date.isoformat(), *dag_ids],
        env={**af.env, **folder, **env},
        cwd=af.home,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_dag_test_loads_one_data_interval_like_a_cli_run(deployment, history, pg_fresh_url, tmp_path):
    proc = dag_test(deployment, DAY)
    assert "DAG RUN STATE eventpipe success" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-4000:]
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

    # why docs/airflow.md says never to `dags test` a deployment's DAG: the run stays in its metadata
    # database under the logical date DAY, so a backfill of DAY ([DAY, DAY + 1 day)) skips that day...
    af, day = deployment, DAY.strftime("%Y-%m-%d")
    af.cli("backfill", "create", "--dag-id", "eventpipe", "--from-date", day, "--to-date", day)
    assert af.sql("SELECT exception_reason FROM backfill_dag_run") == [("already exists",)]
    # ... and reprocessing it reruns the test's interval, [DAY - 1 day, DAY): [DAY, DAY + 1 day) never loads
    # (no scheduler here to mark the empty backfill done, which it must be before the next one: done by hand)
    with sqlite3.connect(af.home / "airflow.db") as db:
        db.execute("UPDATE backfill SET completed_at = CURRENT_TIMESTAMP")
    af.cli("backfill", "create", "--dag-id", "eventpipe", "--from-date", day, "--to-date", day,
           "--reprocess-behavior", "completed")  # fmt: skip
    [(start, end, backfill_id)] = af.sql(
        "SELECT data_interval_start, data_interval_end, backfill_id FROM dag_run"
    )
    assert (str(start)[:10], str(end)[:10], backfill_id) == ("2024-05-01", "2024-05-02", 2)
    # `dags trigger --logical-date D` names its run D but loads the interval that ended before now;
    # without a date, the run has no interval at all
    today = {datetime.now(timezone.utc).date()}  # Airflow's own clock: not the test's pinned one
    af.cli("dags", "trigger", "eventpipe", "--logical-date", "2024-05-03T00:00:00+00:00")
    af.cli("dags", "trigger", "eventpipe")
    today.add(datetime.now(timezone.utc).date())
    triggered = af.sql(
        "SELECT logical_date, data_interval_start, data_interval_end FROM dag_run WHERE run_type = 'manual'"
    )
    by_date = {str(d)[:10] if d else None: (s, e) for d, s, e in triggered}
    start, end = by_date["2024-05-03"]
    end = datetime.fromisoformat(str(end))
    assert end.date() in today and datetime.fromisoformat(str(start)) == end - timedelta(days=1)
    assert by_date[None] == (None, None)


def test_a_load_that_crashes_mid_transaction_is_retried_by_airflow_and_converges(
    deployment, history, pg_fresh_url, tmp_path
):
    armed = tmp_path / "armed"
    armed.write_text("")  # one shot: the first try's kernel dies before the load commits, the retry succeeds
    proc = dag_test(
        deployment, DAY, EVENTPIPE_INJECT="load.before_commit=exit", EVENTPIPE_INJECT_ARMED=str(armed)
    )
    out = proc.stdout + proc.stderr
    assert "DAG RUN STATE eventpipe success" in proc.stdout, out[-6000:]
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
    assert "DAG RUN STATE eventpipe failed" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-4000:]
    [run] = runs(pg_fresh_url)
    assert (run["status"], run["stage"], run["failure_class"]) == ("failed", "load", "cell error")
    assert "InjectedFault" in run["error"]
    assert query(pg_fresh_url, "SELECT count(*) FROM analytics")[0][0] == 0
    nb = nbformat.read(tmp_path / "reports" / run["run_id"] / "03_load.ipynb", as_version=4)
    assert FAILURE_BANNER in nb.cells[0].metadata.get("tags", [])
    assert "FAILED in stage <code>load</code>: cell error." in nb.cells[0].source  # the CLI runner's banner
    metrics = json.loads((tmp_path / "reports" / run["run_id"] / "metrics.json").read_text())
    assert metrics["error"]["class"] == "cell error"


@pytest.fixture
def web_api():
    """The second pipeline's source: Mixpanel's export format, basic auth, a key and a user of its own."""
    api = start_api(
        DemoConfig(start=datetime(2024, 4, 29, tzinfo=timezone.utc), events_per_hour=15, seed=11),
        key="web-secret-5c1e9a77b2",
        style="mixpanel",
    )
    api.server.api_user = "web-service-user"
    yield api
    api.server.stop()


def _connection(**fields) -> str:
    """``AIRFLOW_CONN_<ID>`` in Airflow's JSON form."""
    return json.dumps({"conn_type": "http", **fields})


def test_two_pipelines_two_dags_each_with_its_own_connection_and_state(
    deployment, history, web_api, pg_fresh_url, tmp_path
):
    """One DAG per pipeline from the factory; host, password and extra of each pipeline's connection are
    its base URL, key and auth variables; the worker has no API_KEY; Airflow's masker knows every value."""
    engine = create_engine(
        normalise_database_url(pg_fresh_url)
    )  # the session's database: the web pipeline's table is ours to drop
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS analytics_web"))
    engine.dispose()

    paths = f"paths:\n  reports_dir: {tmp_path / 'reports'}\n  runs_dir: {tmp_path / 'runs'}\n"
    web_params = tmp_path / "web.yaml"
    web_params.write_text(
        (ROOT / "params" / "sources" / "mixpanel.yaml").read_text()
        + paths
        + "quality:\n  min_pass_rate: 0.8\n"
    )
    dag_file = tmp_path / "dags" / "pipelines.py"
    dag_file.parent.mkdir()
    dag_file.write_text(
        DAG_HEADER
        + f"""
default = eventpipe_dag(params_file={str(tmp_path / "params.yaml")!r}, conn_id="eventpipe_default",
                        start_date=START, retries=0)
web = eventpipe_dag(pipeline="web", params_file={str(web_params)!r}, conn_id="eventpipe_web",
                    schedule="0 0 * * *", start_date=START, retries=0)
"""
    )
    env = deployment.pipeline_env
    for name in ("API_KEY", "API_BASE_URL"):  # the worker has neither: the connections do
        env.pop(name)
    assert not {k for k in deployment.env if k.startswith(("API_KEY", "API_BASE_URL"))}
    host, port = web_api.url.removeprefix("http://").split(":")
    proc = dag_test(
        deployment,
        DAY,
        dag_file,
        ("eventpipe", "eventpipe_web"),
        AIRFLOW_CONN_EVENTPIPE_DEFAULT=_connection(host=history.url, password=history.key),
        AIRFLOW_CONN_EVENTPIPE_WEB=_connection(
            host=host,
            port=int(port),
            extra={"MIXPANEL_USER": "web-service-user", "MIXPANEL_SECRET": web_api.key},
        ),
    )
    out = proc.stdout + proc.stderr
    for dag_id in ("eventpipe", "eventpipe_web"):
        assert f"DAG RUN STATE {dag_id} success" in proc.stdout, out[-6000:]
    for conn_id in ("EVENTPIPE_DEFAULT", "EVENTPIPE_WEB"):
        assert f"MASKED AIRFLOW_CONN_{conn_id} True" in proc.stdout

    since, until = datetime(2024, 5, 1, tzinfo=timezone.utc), DAY
    pipeline_of = dict(query(pg_fresh_url, "SELECT run_id, pipeline FROM pipeline_runs"))
    assert pipeline_of == {
        "eventpipe-20240501T000000Z-20240502T000000Z": "default",
        "eventpipe_web-20240501T000000Z-20240502T000000Z": "web",
    }
    assert all(r["status"] == "succeeded" and r["kind"] == "airflow" for r in runs(pg_fresh_url))
    assert table_rows(pg_fresh_url) == expected_table(history, since, until)
    assert _table(pg_fresh_url, "analytics_web") == expected_table(web_api, since, until)
    # each pipeline's own dead letters: those its own run recorded as new, from its own source
    dead = dict(query(pg_fresh_url, "SELECT pipeline, count(*) FROM dead_letter GROUP BY pipeline"))
    new = dict(
        query(pg_fresh_url, "SELECT pipeline, sum(dead_letters_new) FROM pipeline_runs GROUP BY pipeline")
    )
    assert dead == {p: int(n) for p, n in new.items() if n} and set(dead) == {"default", "web"}

    secrets = (history.key, web_api.key)
    for secret in secrets:
        assert secret not in out  # the task logs, as dag.test printed them
    for path in [*(tmp_path / "reports").rglob("*"), *(tmp_path / "runs").rglob("*")]:
        if path.is_file():
            assert not any(s.encode() in path.read_bytes() for s in secrets), path
    for run_id in pipeline_of:  # and never a notebook parameter
        for name in NOTEBOOKS:
            nb = nbformat.read(tmp_path / "reports" / run_id / name, as_version=4)
            assert set(nb.metadata.papermill.parameters) == {"settings_file"}


def _table(database_url: str, table: str) -> dict:
    """A pipeline's own table as ``table_rows`` gives ``analytics``."""
    out = {}
    for user, ts, event, props, session in query(
        database_url, f'SELECT user_id, "timestamp", event_type, properties, session_id FROM {table}'
    ):
        out[(user, round(ts.timestamp() * 1000), event)] = (props, session)
    return out


PARSE = """
import json, os, sys
from airflow.dag_processing.dagbag import DagBag
out = {}
for schedule in sys.argv[2:]:
    os.environ["EVENTPIPE_SCHEDULE"] = schedule
    bag = DagBag(dag_folder=sys.argv[1])
    out[schedule] = {
        "dags": {d: [bag.dags[d].timetable.expression, bag.dags[d].get_task("extract").conn_id]
                 for d in bag.dags},
        "errors": [e.strip().splitlines()[-1] for e in bag.import_errors.values()],
    }
# what the scheduler starts once the DAG is unpaused (catchup off): Airflow's own timetable logic
from airflow.timetables.base import TimeRestriction
from airflow.timetables.interval import CronDataIntervalTimetable
os.environ["EVENTPIPE_SCHEDULE"] = "@daily"
dag = DagBag(dag_folder=sys.argv[1]).dags["eventpipe"]
first = CronDataIntervalTimetable(dag.timetable.expression, timezone="UTC").next_dagrun_info(
    last_automated_data_interval=None,
    restriction=TimeRestriction(earliest=dag.start_date, latest=None, catchup=dag.catchup),
)
out["first run"] = [dag.catchup, first.data_interval.start.isoformat(), first.data_interval.end.isoformat()]
print(json.dumps(out))
"""


def test_the_dag_file_gives_a_dag_per_pipeline_and_refuses_a_bad_schedule_when_parsed(airflow_venv, tmp_path):
    project = tmp_path / "project"
    (project / "params" / "pipelines").mkdir(parents=True)
    for name in ("web", "backend"):
        (project / "params" / "pipelines" / f"{name}.yaml").write_text("{}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        EVENTPIPE_PROJECT=str(project),
        EVENTPIPE_SCHEDULE_WEB="0 6 * * *",
        EVENTPIPE_CONN_ID="eventpipe_api",
        EVENTPIPE_CONN_ID_WEB="posthog_web",
    )
    proc = subprocess.run(
        [str(AIRFLOW_PY), "-c", PARSE, str(ROOT / "dags" / "eventpipe.py"), "@hourly", "", "1d"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    parsed = json.loads(proc.stdout.splitlines()[-1])
    # one DAG per pipeline, default's id as before; the connection of default is not the others'
    assert parsed["@hourly"] == {
        "dags": {
            "eventpipe": ["0 * * * *", "eventpipe_api"],
            "eventpipe_backend": ["0 * * * *", None],
            "eventpipe_web": ["0 6 * * *", "posthog_web"],
        },
        "errors": [],
    }
    # unpaused, a DAG whose start date is long past starts one run at once: the last complete interval
    catchup, start, end = parsed["first run"]
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    assert catchup is False and end in (today.isoformat(), (today - timedelta(days=1)).isoformat())
    assert datetime.fromisoformat(end) - datetime.fromisoformat(start) == timedelta(days=1)
    for schedule in ("", "1d"):  # an import error Airflow shows, one line naming the pipeline and the value
        assert parsed[schedule]["dags"] == {}
        [error] = parsed[schedule]["errors"]
        assert error.startswith(
            f"ValueError: dags/eventpipe.py, pipeline default: schedule {schedule!r} is not"
        )


def test_configuration_errors_fail_the_task_once_without_retries(deployment, pg_fresh_url, tmp_path):
    """An empty data interval, settings the stage refuses (exit 2) and a missing connection: each a
    configuration error that fails its first try and is not retried, though the DAG allows two retries."""
    dag_file = tmp_path / "dags" / "broken.py"
    dag_file.parent.mkdir()
    dag_file.write_text(
        DAG_HEADER
        + f"""
from airflow.sdk import CronTriggerTimetable  # a trigger timetable's runs have no interval
params = {str(tmp_path / "params.yaml")!r}
kw = dict(params_file=params, start_date=START, retries=2, retry_delay=timedelta(seconds=1))
empty = eventpipe_dag("empty_interval", schedule=CronTriggerTimetable("@daily", timezone="UTC"), **kw)
bad = eventpipe_dag("bad_settings", overrides=["window.overlap=soon"], **kw)
unknown = eventpipe_dag("no_connection", conn_id="eventpipe_nowhere", **kw)
"""
    )
    dag_ids = ("empty_interval", "bad_settings", "no_connection")
    proc = dag_test(deployment, DAY, dag_file, dag_ids)
    out = proc.stdout + proc.stderr
    for dag_id in dag_ids:
        assert f"DAG RUN STATE {dag_id} failed" in proc.stdout, out[-6000:]
    tries = deployment.sql(
        "SELECT dag_id, task_id, state, try_number FROM task_instance WHERE task_id = 'extract'"
    )
    assert sorted(tries) == [(d, "extract", "failed", 1) for d in sorted(dag_ids)]
    assert "has no data interval" in out
    assert "window.overlap" in out and "not retried" in out
    assert "connection 'eventpipe_nowhere' is not defined" in out
    # none got as far as the database: not even its schema was created
    assert query(pg_fresh_url, "SELECT to_regclass('pipeline_runs')") == [(None,)]
