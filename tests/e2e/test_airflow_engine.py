"""Airflow 3 engine tier: the real scheduler, dag-processor and api-server, LocalExecutor then CeleryExecutor.

``make test-airflow-engine`` (``pytest -m airflow_engine``); ``.ci/run`` runs it after ``make test``.
Each deployment has its own PostgreSQL metadata database; the pipeline has another. Every
process is killed by the fixtures, every wait is bounded. The LocalExecutor test follows
docs/airflow.md's "Step by step": it runs the ``airflow …`` commands read from that page.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_harness import ROOT, Airflow, create_pg_database, drop_pg_database
from eventpipe.demo.data import DemoConfig
from support import PG_ADMIN, airflow_python, expected_table, runs, start_api, table_rows

# every wait is bounded by BACKFILL_TIMEOUT; the guide's test has four backfills, beyond pytest's 600 s default
pytestmark = [pytest.mark.airflow_engine, pytest.mark.timeout(2400)]

START = datetime(2024, 5, 1, tzinfo=timezone.utc)
DAYS = 4
BACKFILL_TIMEOUT = 600
GUIDE = ROOT / "docs" / "airflow.md"


def guide_commands() -> list[str]:
    """The ``airflow …`` lines of the guide's step-by-step blocks, as an operator pastes them."""
    text = GUIDE.read_text()
    begin = text.index("## Step by step")
    section = text[begin : text.index("\n## ", begin)]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [
        line.split("  #")[0].strip() for b in blocks for line in b.splitlines() if line.startswith("airflow ")
    ]


def guide_command(words: str, having: str = "", *, without: tuple[str, ...] = ()) -> str:
    """The one command of the guide that starts with ``words``, contains ``having`` and none of ``without``."""
    found = [
        c
        for c in guide_commands()
        if c.startswith(words) and having in c and not any(w in c for w in without)
    ]
    assert len(found) == 1, (words, found)
    return found[0]


@pytest.fixture(scope="module")
def airflow_venv() -> Path:
    return airflow_python("the Airflow engine tier")


@pytest.fixture(scope="module")
def history():
    api = start_api(DemoConfig(start=START, events_per_hour=20))
    yield api
    api.server.stop()


@pytest.fixture
def databases(airflow_venv, pg_database) -> Iterator[tuple[str, str]]:
    """(Airflow's metadata database, the pipeline's database): both new, both dropped afterwards."""
    meta = create_pg_database(PG_ADMIN, "airflow_meta")
    pipeline = create_pg_database(PG_ADMIN, "eventpipe_airflow")
    yield meta.replace("postgresql://", "postgresql+psycopg2://", 1), pipeline
    for url in (meta, pipeline):
        drop_pg_database(PG_ADMIN, url)


def _deployment(
    tmp_path: Path, databases: tuple[str, str], history, connection: bool = False, **kw
) -> Airflow:
    """``connection``: the API's URL and key come from the Airflow connection ``eventpipe`` (which the test
    creates as the guide does), not from the workers' environment."""
    meta, pipeline = databases
    shared = tmp_path / "shared"  # what every worker must see: runs_dir and reports_dir (and the databases)
    params = tmp_path / "params.yaml"
    params.write_text(f"paths:\n  reports_dir: {shared / 'reports'}\n  runs_dir: {shared / 'runs'}\n")
    secrets = (
        {"EVENTPIPE_CONN_ID": "eventpipe"}
        if connection
        else {"API_BASE_URL": history.url, "API_KEY": history.key}
    )
    return Airflow(
        tmp_path / "airflow",
        meta,
        {
            **secrets,
            "DATABASE_URL": pipeline,
            "EVENTPIPE_PARAMS": str(params),
            "EVENTPIPE_START_DATE": START.isoformat(),
            "EVENTPIPE_RETRIES": "2",
            "EVENTPIPE_RETRY_DELAY_S": "2",
            "EVENTPIPE_INJECT": "load.before_commit=exit",
            "EVENTPIPE_INJECT_ARMED": str(tmp_path / "armed"),
        },
        **kw,
    )


def _day(i: int) -> str:
    return (START + timedelta(days=i)).strftime("%Y-%m-%d")


def _table_bytes(url: str) -> bytes:
    """The whole analytics table, lineage included, as PostgreSQL's COPY text: byte-for-byte comparable."""
    import psycopg2

    conn = psycopg2.connect(url)
    buf = io.StringIO()
    conn.cursor().copy_expert(
        'COPY (SELECT * FROM analytics ORDER BY user_id, "timestamp", event_type) TO STDOUT', buf
    )
    conn.close()
    return buf.getvalue().encode()


def _overlapping(intervals: list[tuple[datetime, datetime]]) -> bool:
    return any(a0 < b1 and b0 < a1 for i, (a0, a1) in enumerate(intervals) for b0, b1 in intervals[i + 1 :])


def test_local_executor_follows_the_guide_backfills_retries_and_reprocesses(tmp_path, databases, history):
    af = _deployment(tmp_path, databases, history, connection=True, unpaused_at_creation=False)
    pipeline = databases[1]
    reports = tmp_path / "shared" / "reports"
    assert not {k for k in af.env if k.startswith("API_")}  # the workers have no API key: the connection does
    try:
        af.migrate()
        af.start_core()
        af.wait_for_dag()

        # the guide's steps 3-5: the connection, then unpause (the DAG starts paused)
        af.shell(
            guide_command("airflow connections add eventpipe "),
            EVENTS_URL=history.url,
            EVENTS_KEY=history.key,
        )
        assert af.sql("SELECT is_paused FROM dag WHERE dag_id = 'eventpipe'") == [(True,)]
        af.shell(guide_command("airflow dags unpause eventpipe", without=("_web",)))
        assert af.sql("SELECT is_paused FROM dag WHERE dag_id = 'eventpipe'") == [(False,)]

        # step 6: one interval, by a one-day backfill
        one_day = guide_command("airflow backfill create", without=("--max-active-runs", "--reprocess"))
        assert "--from-date 2024-05-01 --to-date 2024-05-01" in one_day
        af.shell(one_day)
        af.wait_for_backfill(1, BACKFILL_TIMEOUT)
        assert table_rows(pipeline) == expected_table(history, START, START + timedelta(days=1))

        # step 7: four days, two DAG runs at a time; the day of step 6 "already exists" and is skipped
        four_days = guide_command("airflow backfill create", "--max-active-runs")
        assert "--from-date 2024-05-01 --to-date 2024-05-04 --max-active-runs 2" in four_days
        af.shell(four_days)
        dag_runs = af.wait_for_backfill(DAYS, BACKFILL_TIMEOUT)
        assert [r["state"] for r in dag_runs] == ["success"] * DAYS
        assert af.sql(
            "SELECT exception_reason FROM backfill_dag_run WHERE backfill_id = 2 AND dag_run_id IS NULL"
        ) == [("already exists",)]
        end = START + timedelta(days=DAYS)
        assert table_rows(pipeline) == expected_table(history, START, end)
        records = runs(pipeline)
        assert [(r["kind"], r["status"]) for r in records] == [("airflow", "succeeded")] * DAYS
        assert sorted((r["window_since"], r["window_until"]) for r in records) == [
            (START + timedelta(days=i), START + timedelta(days=i + 1)) for i in range(DAYS)
        ]
        folders = sorted(p.name for p in reports.iterdir() if p.is_dir())  # beside index.html
        assert folders == sorted(r["run_id"] for r in records)
        for r in records:
            assert (reports / r["run_id"] / "metrics.json").is_file()
        assert _overlapping([(r["start_date"], r["end_date"]) for r in dag_runs[1:]]), (
            "no two intervals ran together"
        )

        # one more interval whose load crashes mid-transaction once: Airflow retries it to success
        # every file of the other intervals' report folders (index.html beside them lists every run: it changes)
        before = {p: p.stat().st_mtime_ns for p in reports.glob("*/**/*") if p.is_file()}
        (tmp_path / "armed").write_text("")
        af.backfill(_day(DAYS), _day(DAYS))
        dag_runs = af.wait_for_backfill(DAYS + 1, BACKFILL_TIMEOUT)
        assert [r["state"] for r in dag_runs] == ["success"] * (DAYS + 1)
        assert not (tmp_path / "armed").exists()
        loads = {ti["run_id"]: ti for ti in af.task_instances() if ti["task_id"] == "load"}
        assert loads[dag_runs[-1]["run_id"]]["try_number"] == 2
        assert all(loads[r["run_id"]]["try_number"] == 1 for r in dag_runs[:-1])
        assert {p: p.stat().st_mtime_ns for p in before} == before  # the other intervals' reports untouched
        assert table_rows(pipeline) == expected_table(history, START, end + timedelta(days=1))
        assert [r["status"] for r in runs(pipeline)] == ["succeeded"] * (DAYS + 1)

        # step 8: the four days again, completed runs reprocessed: the table is byte-for-byte the same
        table = _table_bytes(pipeline)
        reprocess = guide_command("airflow backfill create", "--reprocess-behavior")
        assert reprocess.endswith("--reprocess-behavior completed"), reprocess
        af.shell(reprocess)
        backfills = af.sql("SELECT id FROM backfill ORDER BY id")
        af.wait_until_backfill_done(backfills[-1][0], BACKFILL_TIMEOUT)
        assert [r["state"] for r in af.dag_runs()] == ["success"] * (DAYS + 1)
        assert _table_bytes(pipeline) == table
        reprocessed = sorted(runs(pipeline), key=lambda r: r["window_since"])[:DAYS]
        assert all(r["status"] == "succeeded" for r in reprocessed)
        assert sum(
            json.loads((reports / r["run_id"] / "metrics.json").read_text())["counts"]["unchanged"]
            for r in reprocessed
        ) == len(expected_table(history, START, end))

        # the key came from the connection, and no task log, report or run file holds it
        logs = [p for p in (af.home / "logs").rglob("*") if p.is_file()]
        assert logs
        for path in [*logs, *(tmp_path / "shared").rglob("*")]:
            if path.is_file():
                assert history.key.encode() not in path.read_bytes(), path
    finally:
        af.stop()


def test_celery_executor_runs_tasks_on_both_workers(tmp_path, databases, history):
    af = _deployment(
        tmp_path,
        databases,
        history,
        executor="CeleryExecutor",
        celery_broker=f"redis://127.0.0.1:6379/{hash(tmp_path) % 15 + 1}",
    )
    pipeline = databases[1]
    try:
        af.migrate()
        af.start_core()
        for name in ("worker-a", "worker-b"):  # each in its own working directory, one task at a time
            af.start(
                name,
                "celery",
                "worker",
                "--concurrency",
                "1",
                "--celery-hostname",
                f"{name}@%h",
                "--without-mingle",
                "--without-gossip",
                cwd=tmp_path / name,
                env={"EVENTPIPE_WORKER_NAME": name},
            )
        af.wait_for_dag()
        af.backfill(_day(0), _day(DAYS - 1))
        dag_runs = af.wait_for_backfill(DAYS, BACKFILL_TIMEOUT)
        assert [r["state"] for r in dag_runs] == ["success"] * DAYS
        assert table_rows(pipeline) == expected_table(history, START, START + timedelta(days=DAYS))
        hosts = {ti["hostname"] for ti in af.task_instances()}
        assert hosts == {"worker-a", "worker-b"}, hosts
        assert [r["status"] for r in runs(pipeline)] == ["succeeded"] * DAYS
    finally:
        af.stop()
