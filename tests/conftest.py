"""Fixtures for real resources: a PostgreSQL database per session, the demo API on loopback, a project dir.

Every test runs at one pinned instant (``support.NOW``, through ``EVENTPIPE_NOW``), so its data and
windows do not depend on the hour it runs in; a test moves time on with ``clock.advance``.

On a machine without PostgreSQL the PostgreSQL tests skip with the reason;
in CI (``CI=true``) any skipped test fails the session instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import (
    HISTORY_START,
    HOUR,
    IN_CI,
    NOW,
    PG_ADMIN,
    Api,
    Clock,
    DemoConfig,
    Project,
    pg_unavailable,
    start_api,
)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if IN_CI and skipped:
        if reporter:
            reporter.write_line(f"CI=true: {skipped} test(s) skipped; a skip is a failure in CI", red=True)
        session.exitstatus = 1


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    import psycopg2

    problem = pg_unavailable()
    if problem:
        msg = f"PostgreSQL not reachable at {PG_ADMIN} ({problem})"
        if IN_CI:
            pytest.fail(msg + ": CI must run the PostgreSQL tests")
        pytest.skip(msg)
    name = f"eventpipe_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    conn.close()
    base = PG_ADMIN.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes this runs once on SQLite and once on PostgreSQL (own schema-free database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pipeline.sqlite'}"
    return request.getfixturevalue("pg_fresh_url")


@pytest.fixture
def pg_fresh_url(pg_database: str) -> Iterator[str]:
    """The session database, emptied of the pipeline's tables before the test."""
    import psycopg2

    conn = psycopg2.connect(pg_database)
    conn.autocommit = True
    conn.cursor().execute(
        "DROP TABLE IF EXISTS analytics, pipeline_runs, pipeline_state, dead_letter, run_locks, eventpipe_schema_version CASCADE"
    )
    conn.close()
    yield pg_database


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """ "Now" pinned at ``NOW`` for the test and every process it starts."""
    c = Clock(monkeypatch)
    c.set(NOW)
    return c


@pytest.fixture
def api(clock: Clock) -> Iterator[Api]:
    """The demo API on loopback with recent data only (6.5 hours before "now"), so incremental runs stay small."""
    a = start_api(DemoConfig(start=clock.now.replace(minute=0) - 6 * HOUR, events_per_hour=60))
    yield a
    a.server.stop()


@pytest.fixture
def history(project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """A demo API with history from ``HISTORY_START`` (2024-05-01) on, 20 events an hour; the project points at it."""
    a = start_api(DemoConfig(start=HISTORY_START, events_per_hour=20))
    monkeypatch.setenv("API_BASE_URL", a.url)
    yield a
    a.server.stop()


@pytest.fixture
def project(tmp_path: Path, database_url: str, api: Api, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("API_BASE_URL", api.url)
    monkeypatch.setenv("API_KEY", api.key)
    return Project(tmp_path, database_url)


# -- a real browser: headless Chromium from Debian's packages, driven by Playwright -------------------

CHROMIUM = os.environ.get("EVENTPIPE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        msg = f"no Chromium at {CHROMIUM}: apt-get install chromium chromium-driver"
        if IN_CI:
            pytest.fail(msg + " (CI must run the browser tests)")
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page that records every dialog (alert/confirm/prompt) an injected script would open."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.dialogs = []  # type: ignore[attr-defined]

    def on_dialog(d: Any) -> None:
        pg.dialogs.append(d.message)  # type: ignore[attr-defined]
        d.dismiss()

    pg.on("dialog", on_dialog)
    yield pg
    context.close()
