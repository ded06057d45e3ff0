"""The same 4-day range two ways: CLI ``backfill --workers 2`` and an Airflow backfill with ``max_active_runs 2``.

    .venv/bin/python bench/airflow_compare.py [--events-per-hour 120] [--days 4]   (or: make bench-airflow)

Needs ``make airflow`` and PostgreSQL (``EVENTPIPE_TEST_PG``, default the local server). Each side loads
into a fresh database from the same demo API (served from this process). Reported: wall time of each
side; for Airflow, the wall time from ``airflow backfill create`` to the last DAG run's end, and per task
the time Airflow adds around the stage (task duration minus the notebook's own seconds from
``metrics.json``) and the queue wait (queued -> started). Writes ``bench/airflow_results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lib"), str(ROOT / "tests")]

from airflow_harness import Airflow, create_pg_database, drop_pg_database  # noqa: E402
from eventpipe.demo.data import DemoConfig, DemoData  # noqa: E402
from eventpipe.demo.server import DemoServer  # noqa: E402

PG_ADMIN = os.environ.get("EVENTPIPE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
START = datetime(2024, 5, 1, tzinfo=timezone.utc)
KEY = "bench-key"


def cli_backfill(tmp: Path, api_url: str, days: int) -> dict:
    db = create_pg_database(PG_ADMIN, "bench_cli")
    env = {**os.environ, "API_BASE_URL": api_url, "API_KEY": KEY, "DATABASE_URL": db}
    end = START + timedelta(days=days)
    argv = [
        sys.executable,
        str(ROOT / "run_pipeline.py"),
        "backfill",
        "--start",
        START.isoformat(),
        "--end",
        end.isoformat(),
        "--workers",
        "2",
        "-p",
        f"paths.reports_dir={tmp / 'cli' / 'reports'}",
        "-p",
        f"paths.runs_dir={tmp / 'cli' / 'runs'}",
    ]
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"CLI backfill failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return {"wall_s": round(wall, 2)}
    finally:
        drop_pg_database(PG_ADMIN, db)


def airflow_backfill(tmp: Path, api_url: str, days: int) -> dict:
    meta = create_pg_database(PG_ADMIN, "bench_airflow_meta")
    db = create_pg_database(PG_ADMIN, "bench_airflow")
    params = tmp / "airflow-params.yaml"
    reports = tmp / "airflow" / "reports"
    params.write_text(f"paths:\n  reports_dir: {reports}\n  runs_dir: {tmp / 'airflow' / 'runs'}\n")
    af = Airflow(
        tmp / "airflow" / "home",
        meta.replace("postgresql://", "postgresql+psycopg2://", 1),
        {
            "API_BASE_URL": api_url,
            "API_KEY": KEY,
            "DATABASE_URL": db,
            "EVENTPIPE_PARAMS": str(params),
            "EVENTPIPE_START_DATE": START.isoformat(),
        },
    )
    try:
        af.migrate()
        t0 = time.perf_counter()
        af.start_core()
        af.wait_for_dag()
        ready = time.perf_counter() - t0
        t1 = time.perf_counter()
        af.backfill(START.strftime("%Y-%m-%d"), (START + timedelta(days=days - 1)).strftime("%Y-%m-%d"))
        dag_runs = af.wait_for_backfill(days, 1800)
        wall = time.perf_counter() - t1
        if any(r["state"] != "success" for r in dag_runs):
            raise SystemExit(f"Airflow backfill failed: {dag_runs}")
        stage_s: dict[tuple[str, str], float] = {}
        for folder in reports.iterdir():
            m = json.loads((folder / "metrics.json").read_text())
            for stage, s in m["stage_seconds"].items():
                stage_s[(m["window"]["since"], stage)] = s
        overhead, queued = [], []
        runs_by_id = {r["run_id"]: r for r in dag_runs}
        for ti in af.task_instances():
            since = runs_by_id[ti["run_id"]]["data_interval_start"].strftime("%Y-%m-%dT%H:%M:%SZ")
            overhead.append(
                (ti["end_date"] - ti["start_date"]).total_seconds() - stage_s[(since, ti["task_id"])]
            )
            queued.append((ti["start_date"] - ti["queued_dttm"]).total_seconds())
        return {
            "wall_s": round(wall, 2),
            "deployment_ready_s": round(ready, 2),
            "tasks": len(overhead),
            "overhead_per_task_s_median": round(median(overhead), 2),
            "overhead_per_task_s_max": round(max(overhead), 2),
            "queue_wait_per_task_s_median": round(median(queued), 2),
        }
    finally:
        af.stop()
        for url in (meta, db):
            drop_pg_database(PG_ADMIN, url)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=int, default=4)
    p.add_argument("--events-per-hour", type=int, default=120)
    args = p.parse_args()
    server = DemoServer(
        DemoData(DemoConfig(start=START, events_per_hour=args.events_per_hour)), api_key=KEY
    ).start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-airflow-") as tmp:
            cli = cli_backfill(Path(tmp), server.url, args.days)
            airflow = airflow_backfill(Path(tmp), server.url, args.days)
    finally:
        server.stop()
    result = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "days": args.days,
        "events_per_hour": args.events_per_hour,
        "cli_backfill_workers_2": cli,
        "airflow_local_executor_max_active_runs_2": airflow,
    }
    print(json.dumps(result, indent=2))
    (ROOT / "bench" / "airflow_results.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
