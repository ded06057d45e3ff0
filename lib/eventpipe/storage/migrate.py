"""Schema migrations: the pipeline brings its own tables to the newest revision as it starts (Alembic).

A new database gets every revision from the baseline; a database made by the release
before migrations (tables, no version table) is stamped at the baseline first and
then altered in place, so nothing in it is lost. The check is a read on the reader
engine, so a run at the newest revision never waits for a writer; the upgrade itself
runs in one transaction under a lock (PostgreSQL advisory lock, SQLite's write lock).
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text

log = logging.getLogger(__name__)

SCRIPTS = Path(__file__).with_name("migrations")
VERSION_TABLE = "eventpipe_schema_version"
BASELINE = "0001"
MIGRATE_LOCK = 0x6576_6D69_6772  # "evmigr"


def _config(conn: Connection, schema: str | None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    cfg.attributes["connection"] = conn
    cfg.attributes["schema"] = schema or None
    return cfg


def head() -> str:
    from alembic.script import ScriptDirectory

    cfg = _config(None, None)  # type: ignore[arg-type]
    return ScriptDirectory.from_config(cfg).get_current_head()


def current(conn: Connection, schema: str | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    ctx = MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE, "version_table_schema": schema or None}
    )
    return ctx.get_current_revision()


def upgrade(engine: Engine, reader: Engine | None = None, schema: str | None = None) -> str | None:
    """Bring the schema to the newest revision; return the revision it was at (None: a new database)."""
    from alembic import command

    target = head()
    with (reader or engine).connect() as conn:
        if current(conn, schema) == target:
            return target
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATE_LOCK})
            if schema:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        before = current(conn, schema)  # again, under the lock: another process may have just done it
        if before == target:
            return before
        cfg = _config(conn, schema)
        if before is None and "pipeline_runs" in inspect(conn).get_table_names(schema=schema or None):
            log.info("database from before schema migrations: stamping it at the baseline %s", BASELINE)
            command.stamp(cfg, BASELINE)
            before = BASELINE
        command.upgrade(cfg, "head")
        log.info("database schema upgraded from %s to %s", before or "empty", target)
        return before


def downgrade(engine: Engine, revision: str, schema: str | None = None) -> None:
    """Take the schema back to ``revision`` (each migration's ``downgrade``), e.g. to test an upgrade."""
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(_config(conn, schema), revision)
