"""A real Airflow 3 deployment for the tests and the benchmark: its own home, metadata database and processes.

Airflow runs from ``.airflow-venv`` (``make airflow``); the tasks run the stages in
the project's interpreter (``EVENTPIPE_PYTHON``, the one running the tests). Every
process is started in its own session and killed (group-wide) by ``stop()``.

The Celery workers import this module (``worker_hostname``) in the Airflow venv, which has neither pytest nor
eventpipe: it imports the standard library only.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_VENV = ROOT / ".airflow-venv"
AIRFLOW_PY = AIRFLOW_VENV / "bin" / "python"


AIRFLOW_BIN = AIRFLOW_VENV / "bin" / "airflow"
DAG_ID = "eventpipe"


def worker_hostname() -> str:
    """``AIRFLOW__CORE__HOSTNAME_CALLABLE`` of the test's Celery workers: two processes on one host, two names."""
    return os.environ.get("EVENTPIPE_WORKER_NAME") or socket.getfqdn()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 1.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds (never hang)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def create_pg_database(admin_url: str, prefix: str) -> str:
    import psycopg2

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


def drop_pg_database(admin_url: str, url: str) -> None:
    import psycopg2

    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    conn.cursor().execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    conn.close()


@dataclass
class Airflow:
    """One Airflow deployment: ``env`` is what every one of its processes (and so every task) sees."""

    home: Path
    metadata_url: str  # SQLAlchemy URL of Airflow's own database
    pipeline_env: dict[str, str]  # API_BASE_URL, API_KEY, DATABASE_URL, EVENTPIPE_PARAMS, …
    executor: str = "LocalExecutor"
    celery_broker: str = ""
    # False: a new DAG starts paused, as in a real deployment (the operator runs `airflow dags unpause`)
    unpaused_at_creation: bool = True
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.api_port = free_port()
        self.jwt_secret = secrets.token_hex(32)  # 64 bytes: what HS512 wants

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(self.pipeline_env)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__CORE__PARALLELISM": "2",  # two cores on the test machine
                # only the backfills create runs: the scheduler creates none from the schedule (a DAG must be
                # unpaused all the same: the scheduler starts no queued run of a paused DAG, backfill or not)
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(not self.unpaused_at_creation),
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
                "AIRFLOW__API__SECRET_KEY": self.jwt_secret,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "EVENTPIPE_PYTHON": sys.executable,
                "EVENTPIPE_PROJECT": str(ROOT),
            }
        )
        if self.executor == "CeleryExecutor":
            env.update(
                {
                    "AIRFLOW__CELERY__BROKER_URL": self.celery_broker,
                    "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.metadata_url,
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
                    "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                }
            )
        return env

    def cli(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [str(AIRFLOW_BIN), *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"airflow {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                f"{proc.stderr[-3000:]}"
            )
        return proc

    def shell(self, command: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
        """A line as an operator pastes it (``airflow …`` on the PATH), in the deployment's environment plus ``env``."""
        path = f"{AIRFLOW_BIN.parent}{os.pathsep}{os.environ.get('PATH', '')}"
        proc = subprocess.run(
            ["bash", "-c", command],
            env={**self.env, "PATH": path, **env},
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"{command} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc

    def migrate(self) -> None:
        self.cli("db", "migrate", timeout=600)

    def start(
        self, name: str, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        """An Airflow process in its own session; ``env`` adds to the deployment's (a worker's name)."""
        cwd = cwd or self.home
        cwd.mkdir(parents=True, exist_ok=True)
        extra = dict(env or {})
        if "EVENTPIPE_WORKER_NAME" in extra:  # task instances record the worker's name as their hostname
            extra.update(
                {
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airflow_harness.worker_hostname",
                    "PYTHONPATH": str(Path(__file__).parent),
                }
            )
        log = open(self.home / f"{name}.log", "ab")
        proc = subprocess.Popen(
            [str(AIRFLOW_BIN), *args],
            env={**self.env, **extra},
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def start_core(self) -> None:
        """api-server (the tasks' execution API), then dag-processor and scheduler, which are told its URL."""
        for attempt in range(3):
            self.start("api-server", "api-server", "--port", str(self.api_port))
            try:
                wait_until(self._api_up, 180, "the api-server")
                break
            except AssertionError:
                # the free port was taken by someone else before the server bound it: another port
                if attempt == 2 or self.procs["api-server"].poll() is None:
                    raise
                self.procs.pop("api-server")
                self.api_port = free_port()
        self.start("dag-processor", "dag-processor")
        self.start("scheduler", "scheduler")

    def _api_up(self) -> bool:
        self.check_alive()
        try:
            with socket.create_connection(("127.0.0.1", self.api_port), timeout=1):
                return True
        except OSError:
            return False

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.home / f"{name}.log").read_text(errors="replace")[-4000:]
                raise AssertionError(f"airflow {name} exited {proc.returncode}:\n{tail}")

    def stop(self, *names: str) -> None:
        for name in names or list(self.procs):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            except ProcessLookupError:
                pass

    # -- the metadata database -------------------------------------------------------------------

    def sql(self, query: str, **params: Any) -> list[tuple]:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.metadata_url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(query), params)]
        finally:
            engine.dispose()

    def wait_for_dag(self, timeout: float = 180) -> None:
        wait_until(
            lambda: (
                self.check_alive() or self.sql("SELECT 1 FROM serialized_dag WHERE dag_id = :d", d=DAG_ID)
            ),
            timeout,
            "the dag-processor to serialize the DAG",
        )

    def backfill(self, start: str, end: str, *extra: str) -> None:
        self.cli(
            "backfill",
            "create",
            "--dag-id",
            DAG_ID,
            "--from-date",
            start,
            "--to-date",
            end,
            "--max-active-runs",
            "2",
            *extra,
        )

    def dag_runs(self) -> list[dict[str, Any]]:
        cols = (
            "run_id",
            "state",
            "data_interval_start",
            "data_interval_end",
            "start_date",
            "end_date",
            "backfill_id",
        )
        rows = self.sql(
            f"SELECT {', '.join(cols)} FROM dag_run WHERE dag_id = :d ORDER BY data_interval_start", d=DAG_ID
        )
        return [dict(zip(cols, r)) for r in rows]

    def task_instances(self) -> list[dict[str, Any]]:
        cols = (
            "run_id",
            "task_id",
            "state",
            "try_number",
            "hostname",
            "pid",
            "start_date",
            "end_date",
            "queued_dttm",
        )
        rows = self.sql(f"SELECT {', '.join(cols)} FROM task_instance WHERE dag_id = :d", d=DAG_ID)
        return [dict(zip(cols, r)) for r in rows]

    def wait_until_backfill_done(self, backfill_id: int, timeout: float) -> None:
        wait_until(
            lambda: (
                self.check_alive()
                or self.sql(
                    "SELECT 1 FROM backfill WHERE id = :i AND completed_at IS NOT NULL", i=backfill_id
                )
            ),
            timeout,
            f"backfill {backfill_id} to complete",
            every=2,
        )

    def wait_for_backfill(self, n_runs: int, timeout: float) -> list[dict[str, Any]]:
        """Poll until ``n_runs`` DAG runs reached a final state (bounded); return them."""

        def done() -> list[dict[str, Any]] | None:
            self.check_alive()
            runs = self.dag_runs()
            finished = [r for r in runs if r["state"] in ("success", "failed")]
            if len(runs) < n_runs or len(finished) < len(runs):
                return None
            # the scheduler marks the backfill complete a moment later; only then may the next one be created
            open_backfills = self.sql("SELECT count(*) FROM backfill WHERE completed_at IS NULL")[0][0]
            return runs if open_backfills == 0 else None

        return wait_until(done, timeout, f"{n_runs} DAG runs to finish", every=2)
