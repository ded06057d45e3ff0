"""Schema migrations: a new database gets the newest schema; one made by release 6381454 upgrades in place."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from support import query

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _store(url: str, monkeypatch: pytest.MonkeyPatch, *overrides: str):
    from eventpipe.settings import load_settings
    from eventpipe.storage.store import Store

    monkeypatch.setenv("DATABASE_URL", url)
    return Store(load_settings(None, list(overrides)))


def _old_database(url: str) -> None:
    """The tables exactly as the previous release created them, with a few rows in each."""
    from eventpipe.settings import normalise_database_url

    dialect = "postgresql" if url.startswith("postgres") else "sqlite"
    ddl = (FIXTURES / f"schema_6381454_{dialect}.sql").read_text()
    engine = create_engine(normalise_database_url(url))
    ts = "2024-05-01 10:00:00+00:00"
    with engine.begin() as conn:
        for stmt in ddl.split(";"):
            body = "\n".join(line for line in stmt.splitlines() if not line.startswith("--")).strip()
            if body:
                conn.execute(text(body))
        conn.execute(
            text(
                "INSERT INTO analytics VALUES ('u1', :ts, 'click', 's1', :p, '2024-05-01', 10, 'old-run', :ts)"
            ),
            {"ts": ts, "p": json.dumps({"k": "v"})},
        )
        conn.execute(
            text(
                "INSERT INTO pipeline_runs (run_id, kind, status, started_at, extracted, loaded, host) "
                "VALUES ('old-run', 'incremental', 'succeeded', :ts, 5, 4, 'oldhost')"
            ),
            {"ts": ts},
        )
        conn.execute(
            text("INSERT INTO pipeline_state VALUES ('incremental', :ts, 'old-run', :ts)"), {"ts": ts}
        )
        conn.execute(
            text(
                "INSERT INTO dead_letter (record_hash, raw, stage, reasons, status, first_run_id, "
                "last_run_id, first_seen, last_seen, attempts) VALUES ('h1', :raw, 'transform', "
                ":r, 'pending', 'old-run', 'old-run', :ts, :ts, 1)"
            ),
            {"ts": ts, "r": json.dumps(["bad"]), "raw": '{"x": 1}'},
        )
    engine.dispose()


def _columns(store) -> dict[str, set[str]]:
    with store.reader.connect() as conn:
        insp = inspect(conn)
        return {
            t.name: {c["name"] for c in insp.get_columns(t.name, schema=store.schema or None)}
            for t in store.t.metadata.sorted_tables
        }


def test_a_new_database_gets_the_newest_schema(database_url, monkeypatch):
    from eventpipe.storage import migrate

    store = _store(database_url, monkeypatch)
    store.create_schema()
    assert _columns(store) == {t.name: {c.name for c in t.columns} for t in store.t.metadata.sorted_tables}
    with store.reader.connect() as conn:
        assert migrate.current(conn) == migrate.head()
    store.create_schema()  # at the newest revision: nothing to do
    store.dispose()


def test_a_database_of_the_previous_release_upgrades_in_place_with_nothing_lost(database_url, monkeypatch):
    from eventpipe.storage import migrate

    _old_database(database_url)
    before = {
        t: query(database_url, f"SELECT * FROM {t}")
        for t in ("analytics", "pipeline_runs", "pipeline_state", "dead_letter")
    }
    store = _store(database_url, monkeypatch)
    store.create_schema()
    with store.reader.connect() as conn:
        assert migrate.current(conn) == migrate.head()
    assert "code_version" in _columns(store)["pipeline_runs"]
    assert "window_since" in _columns(store)["run_locks"]  # migration 0004
    after = {t: query(database_url, f"SELECT * FROM {t}") for t in before}
    assert after["analytics"] == before["analytics"]
    # migration 0006 appends the pipeline column: every old row is pipeline default
    assert after["pipeline_state"] == [(*r, "default") for r in before["pipeline_state"]]
    assert after["dead_letter"] == [(*r, "default") for r in before["dead_letter"]]
    n_old = len(before["pipeline_runs"][0])
    assert [r[:n_old] for r in after["pipeline_runs"]] == before["pipeline_runs"]
    assert all(v is None for v in after["pipeline_runs"][0][n_old:-1])  # the new ledger columns, empty
    assert after["pipeline_runs"][0][-1] == "default"
    assert store.watermark() == datetime(2024, 5, 1, 10, tzinfo=timezone.utc)
    # the new columns take a ledger entry
    store.record_ledger(
        "old-run",
        {
            "code": {"git_commit": "abc", "dirty": False},
            "params": {"a": 1},
            "notebooks_sha256": {"01_extract.ipynb": "f" * 64},
            "reports_sha256": {},
            "params_sha256": "0" * 64,
            "user": "me",
            "host": "h",
        },
    )
    entry = store.run_entry("old-run")
    assert entry["code_version"] == "abc" and entry["params"] == {"a": 1} and entry["loaded"] == 4
    store.dispose()


# run_locks as storage/lock.py created it on PostgreSQL, outside the migrations, before revision 0004
LOCKS_MADE_BY_LOCK_PY = """
CREATE TABLE run_locks (
    id SERIAL NOT NULL,
    run_id TEXT NOT NULL,
    window_since TIMESTAMP WITH TIME ZONE NOT NULL,
    window_until TIMESTAMP WITH TIME ZONE NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    acquired_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (id)
)
"""


@pytest.mark.postgres
def test_run_locks_that_the_window_locks_made_themselves_are_kept(pg_fresh_url, monkeypatch):
    from eventpipe.settings import normalise_database_url
    from eventpipe.storage import migrate

    _old_database(pg_fresh_url)
    engine = create_engine(normalise_database_url(pg_fresh_url))
    with engine.begin() as conn:
        conn.execute(text(LOCKS_MADE_BY_LOCK_PY))
        conn.execute(
            text(
                "INSERT INTO run_locks (run_id, window_since, window_until, host, pid, acquired_at) "
                "VALUES ('old-run', :ts, :ts, 'oldhost', 1, :ts)"
            ),
            {"ts": "2024-05-01 10:00:00+00:00"},
        )
    engine.dispose()
    store = _store(pg_fresh_url, monkeypatch)
    store.create_schema()
    with store.reader.connect() as conn:
        assert migrate.current(conn) == migrate.head()
    assert [r[1] for r in query(pg_fresh_url, "SELECT * FROM run_locks")] == ["old-run"]
    assert _columns(store)["run_locks"] == {c.name for c in store.t.run_locks.columns}
    store.dispose()


@pytest.mark.postgres
def test_migrations_honour_the_configured_postgres_schema(pg_database, monkeypatch):
    from eventpipe.storage import migrate

    store = _store(pg_database, monkeypatch, "load.schema=audit_mig")
    try:
        store.create_schema()
        with store.reader.connect() as conn:
            assert migrate.current(conn, "audit_mig") == migrate.head()
            assert "pipeline_runs" in inspect(conn).get_table_names(schema="audit_mig")
    finally:
        with store.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS audit_mig CASCADE"))
        store.dispose()
