"""Helpers the tests share: a pinned clock, the demo API on loopback, a project folder, reading the tables back."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from eventpipe import clock
from eventpipe.demo import styles
from eventpipe.demo.data import DemoConfig, DemoData
from eventpipe.demo.faults import FaultPlan
from eventpipe.demo.server import DemoServer
from eventpipe.settings import (
    ApiSettings,
    Secret,
    SourceSettings,
    auth_secrets,
    load_settings,
    normalise_database_url,
)
from eventpipe.source.client import SourceClient
from eventpipe.source.config import SourceConfig

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("EVENTPIPE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
API_KEY = "sk-test-KEY-7f3a9c0d1e2b"
RUN_PIPELINE = str(ROOT / "run_pipeline.py")
UNSET = object()
# the instant every test runs at: the demo API's data and the pipeline's windows are the same in any hour
NOW = datetime(2025, 6, 2, 12, 30, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
HISTORY_START = datetime(2024, 5, 1, tzinfo=timezone.utc)  # the ``history`` fixture's first event


@dataclass
class Clock:
    """The tests' "now", pinned through ``EVENTPIPE_NOW``: the demo API, in-process runs and every child
    process (CLI runs, kernels, scheduler ticks) read it, so a test sees the same events in any hour."""

    monkeypatch: pytest.MonkeyPatch
    now: datetime = NOW

    def set(self, at: datetime) -> datetime:
        self.now = at
        self.monkeypatch.setenv(clock.ENV, at.isoformat())
        return at

    def advance(self, by: timedelta) -> datetime:
        """Time passes (the next run's window ends later): only when the test says so."""
        return self.set(self.now + by)


def pg_unavailable() -> str | None:
    import psycopg2

    try:
        psycopg2.connect(PG_ADMIN.replace("postgresql://", "postgresql://", 1), connect_timeout=3).close()
        return None
    except psycopg2.OperationalError as e:
        return str(e).strip().splitlines()[0]


@dataclass
class Api:
    server: DemoServer
    data: DemoData
    key: str

    @property
    def url(self) -> str:
        return self.server.url


def make_client(
    url: str, key: str, api: ApiSettings | None = None, env: dict[str, str] | None = None, **source: Any
) -> SourceClient:
    """A source client for ``url`` with these api settings and ``source:`` section (the contract by default)."""
    base = load_settings(None, [], env={})
    section = SourceSettings(**source)
    settings = dataclasses.replace(
        base,
        api=api or ApiSettings(),
        api_key=Secret(key),
        source=section,
        auth_secrets=auth_secrets(section.auth, {**(env or {}), "API_KEY": key}),
    )
    return SourceClient(url, SourceConfig.from_settings(settings, env or {}), settings.api)


def start_api(
    config: DemoConfig | None = None,
    faults: FaultPlan | None = None,
    key: str = API_KEY,
    style: str = "contract",
    latency_s: float = 0.0,
) -> Api:
    data = DemoData(config or DemoConfig())
    server = DemoServer(data, api_key=key, faults=faults, style=style, latency_s=latency_s).start()
    return Api(server, data, key)


@dataclass
class Project:
    """A pipeline environment in a temp dir: its own reports/, runs/ and database."""

    root: Path
    database_url: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def overrides(self) -> list[str]:
        return [f"paths.reports_dir={self.reports}", f"paths.runs_dir={self.runs}"]

    def cli(self, *args: str) -> int:
        from eventpipe.cli import main

        return main(self._argv(args))

    def _argv(self, args: tuple[str, ...]) -> list[str]:
        """The project's folders go first, so a test's own -p can still override them."""
        if args[0] not in ("run", "backfill", "replay-dlq", "status", "schedule", "report"):
            return list(args)
        folders = [x for o in self.overrides() for x in ("-p", o)]
        return [args[0], *folders, *args[1:]]

    def spawn(self, *args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[str]:
        """The CLI as a child process in its own session (so a test can kill the run and its kernels)."""
        argv = [sys.executable, str(ROOT / "run_pipeline.py"), *self._argv(args)]
        return subprocess.Popen(
            argv,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kw,
        )

    def spawn_held(self, inject: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """``spawn``, with the run held at an injection point (``EVENTPIPE_INJECT``, e.g.
        ``load.before_commit=sleep:6``); returns once the run got there."""
        self.root.mkdir(parents=True, exist_ok=True)
        mark = self.root / f"reached-{uuid.uuid4().hex[:8]}"
        proc = self.spawn(
            *args, env={**(env or {}), "EVENTPIPE_INJECT": inject, "EVENTPIPE_INJECT_MARK": str(mark)}
        )
        try:
            wait_for_mark(mark, proc)
        except AssertionError:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        return proc

    def settings(self, *extra: str) -> Any:
        return load_settings(None, [*self.overrides(), *extra])


def wait_for_mark(mark: Path, proc: subprocess.Popen[str] | None = None, timeout: float = 120) -> None:
    """Wait until a run reaches its injection point (``EVENTPIPE_INJECT_MARK``); fail if it never does."""
    deadline = time.monotonic() + timeout
    while not mark.exists() and time.monotonic() < deadline and (proc is None or proc.poll() is None):
        time.sleep(0.05)
    assert mark.exists(), f"the run never reached its injection point ({mark.name})"


def table_rows(database_url: str) -> dict[tuple[str, int, str], tuple[dict, str | None]]:
    """The analytics table as key (user_id, epoch ms, event_type) -> (properties, session_id)."""
    engine = create_engine(normalise_database_url(database_url))
    out = {}
    with engine.connect() as conn:
        for user, ts, event, props, session in conn.execute(
            text('SELECT user_id, "timestamp", event_type, properties, session_id FROM analytics')
        ):
            if isinstance(ts, str):
                ts = datetime.fromisoformat(ts)
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=timezone.utc)
            ms = round(ts.timestamp() * 1000)
            out[(user, ms, event)] = (props if isinstance(props, dict) else json.loads(props), session)
    engine.dispose()
    return out


def expected_table(
    api: Api, since: datetime, until: datetime
) -> dict[tuple[str, int, str], tuple[dict, str | None]]:
    """The rows a correct load of ``[since, until)`` stores, as the API's style sends them."""
    stored = styles.STORED.get(api.server.style, lambda t: (t.properties, t.session_id))
    return {k: stored(t) for k, t in api.data.expected_rows(since, until).items()}


def runs(database_url: str) -> list[dict[str, Any]]:
    """pipeline_runs, oldest first, with UTC-aware windows."""
    cols = [
        "run_id",
        "kind",
        "status",
        "window_since",
        "window_until",
        "extracted",
        "rejected_transform",
        "duplicates",
        "transformed",
        "passed",
        "rejected_quality",
        "loaded",
        "error",
        "failure_class",
        "stage",
    ]
    out = []
    for row in query(database_url, f"SELECT {', '.join(cols)} FROM pipeline_runs ORDER BY started_at"):
        run = dict(zip(cols, row))
        for k in ("window_since", "window_until"):
            v = run[k]
            if v is not None:
                v = datetime.fromisoformat(v) if isinstance(v, str) else v
                run[k] = v if v.tzinfo else v.replace(tzinfo=timezone.utc)
        out.append(run)
    return out


def query(database_url: str, sql: str) -> list[tuple]:
    engine = create_engine(normalise_database_url(database_url))
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text(sql))]
    engine.dispose()
    return rows


def run_cli(tmp_path: Path, *args: str, **env_changes) -> subprocess.CompletedProcess:
    """``run_pipeline.py args`` in a clean environment; ``NAME=UNSET`` removes a variable."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite'}",
        "API_BASE_URL": "http://127.0.0.1:9",  # well-formed; never reached because every case stops first
    }
    if clock.ENV in os.environ:  # the test's pinned instant (the ``clock`` fixture)
        env[clock.ENV] = os.environ[clock.ENV]
    for name, value in env_changes.items():
        if value is UNSET:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, RUN_PIPELINE, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_usage_error(proc: subprocess.CompletedProcess, *must_mention: str) -> str:
    """Exit 2, exactly one line on stderr, no traceback, and the line names the problem."""
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, f"exit {proc.returncode}; stderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{proc.stderr}"
    line = lines[0]
    for word in must_mention:
        assert word.lower() in line.lower(), f"{word!r} not in {line!r}"
    return line


def airflow_python(tests: str) -> Path:
    """The Airflow venv's python; without it (``make airflow``) these tests skip, or fail in CI."""
    from airflow_harness import AIRFLOW_PY

    if not AIRFLOW_PY.exists():
        msg = f"{AIRFLOW_PY} is missing: run `make airflow`"
        if IN_CI:
            pytest.fail(f"{msg} (CI must run {tests})")
        pytest.skip(msg)
    return AIRFLOW_PY
