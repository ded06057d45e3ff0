"""PostgreSQL for the benchmark: the admin URL, one database per run (created and dropped), emptied tables."""

from __future__ import annotations

import os
import uuid
from typing import Any

from .common import say

PG_ADMIN = os.environ.get("EVENTPIPE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PIPELINE_TABLES = ("analytics", "dead_letter", "pipeline_runs", "pipeline_state")
COPY_COLUMNS = (
    "user_id",
    "timestamp",
    "event_type",
    "session_id",
    "properties",
    "event_date",
    "event_hour",
    "run_id",
    "loaded_at",
)
COPY_COLUMN_LIST = ", ".join(f'"{c}"' for c in COPY_COLUMNS)  # the CSV's columns, in its order


def pg_connect(url: str) -> Any:
    import psycopg2

    return psycopg2.connect(url, connect_timeout=10, application_name="eventpipe-bench")


def database_url(name: str) -> str:
    return f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"


def _admin(sql: str) -> None:
    """One statement outside a transaction (``CREATE/DROP DATABASE`` cannot run inside one)."""
    conn = pg_connect(PG_ADMIN)
    conn.autocommit = True
    conn.cursor().execute(sql)
    conn.close()


def create_database(name: str | None = None) -> tuple[str, str]:
    """A new database (by default ``eventpipe_bench_<pid>_<hex>``): its name and URL."""
    name = name or f"eventpipe_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    _admin(f'CREATE DATABASE "{name}"')
    return name, database_url(name)


def drop_database(name: str) -> None:
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def execute(url: str, sql: str, params: tuple = ()) -> tuple | None:
    """One statement in a transaction of its own; the first row it returns, if it returns rows."""
    conn = pg_connect(url)
    with conn, conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone() if cur.description else None
    conn.close()
    return row


def database_exists(name: str) -> bool:
    return execute(PG_ADMIN, "SELECT 1 FROM pg_database WHERE datname = %s", (name,)) is not None


def truncate_pipeline_tables(db_url: str) -> None:
    """Empty tables for the next run (each run then inserts every row, as the first load of a window does),
    then a checkpoint (``checkpoint``)."""
    conn = pg_connect(db_url)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('analytics') IS NOT NULL")
        if cur.fetchone()[0]:
            cur.execute(f"TRUNCATE {', '.join(PIPELINE_TABLES)}")
    conn.close()
    checkpoint()


def checkpoint() -> None:
    """``CHECKPOINT`` before a measured step: the step then starts with no dirty pages and a full
    ``max_wal_size`` ahead, instead of meeting the previous step's checkpoint halfway (one such checkpoint
    made the same raw ``COPY`` take 6.7 s or 12.3 s). Needs a superuser or ``pg_checkpoint``; without, a
    note and the step runs anyway."""
    try:
        _admin("CHECKPOINT")
    except Exception as e:  # a bench on a server where we may not checkpoint still runs
        say(f"note: no CHECKPOINT before the step ({str(e).strip().splitlines()[0]})")


def server_version(db_url: str) -> str | None:
    try:
        conn = pg_connect(db_url)
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0]
        conn.close()
    except Exception:
        return None
    return version
