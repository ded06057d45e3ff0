"""The pipeline's tables: ``analytics``, ``pipeline_runs``, ``pipeline_state``, ``dead_letter`` and ``run_locks``.

Every one is created and altered by the migrations (``storage/migrations/versions/``) only, but for the
destination table of a pipeline other than ``default`` (``analytics_<name>`` or ``pipeline.table``): it is
``analytics``'s twin, created as the pipeline first runs (``Store.create_schema``); a shared one
(``pipeline.shared``) has a ``source`` column in front of the key. The other tables hold
every pipeline's rows, told apart by their ``pipeline`` column (migration 0006).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

from ..core.counts import RunCounts

JSONText = Text().with_variant(JSONB(), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")
UTC = timezone.utc


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every one the pipeline stores is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class Tables:
    metadata: MetaData
    analytics: Table
    runs: Table
    state: Table
    dead_letter: Table
    run_locks: Table


def _pipeline(primary_key: bool = False, index: bool = False) -> Column:
    """The pipeline a row belongs to (migration 0006; a database from before holds pipeline ``default``)."""
    return Column(
        "pipeline", Text, nullable=False, server_default="default", primary_key=primary_key, index=index
    )


SOURCE_COLUMN = "source"


def define_tables(
    schema: str | None = None, analytics_name: str = "analytics", shared: bool = False
) -> Tables:
    """``shared``: the destination is a table several pipelines load, its ``source`` column (the pipeline's
    name) first in the key, so each pipeline's rows are upserted and deduplicated apart from the others'."""
    md = MetaData(schema=schema or None)
    ts = DateTime(timezone=True)
    analytics = Table(
        analytics_name,
        md,
        *([Column(SOURCE_COLUMN, Text, primary_key=True)] if shared else []),
        Column("user_id", Text, primary_key=True),
        Column("timestamp", ts, primary_key=True),
        Column("event_type", Text, primary_key=True),
        Column("session_id", Text),
        Column("properties", JSONText, nullable=False),
        Column("event_date", Date, nullable=False, index=True),
        Column("event_hour", SmallInteger, nullable=False),
        Column("run_id", Text, nullable=False),
        Column("loaded_at", ts, nullable=False),
    )
    runs = Table(
        "pipeline_runs",
        md,
        Column("run_id", Text, primary_key=True),
        Column("kind", Text, nullable=False),
        Column("status", Text, nullable=False, index=True),
        Column("window_since", ts),
        Column("window_until", ts),
        Column("started_at", ts, nullable=False),
        Column("finished_at", ts),
        Column("duration_s", Float),
        *(Column(c, BigInteger) for c in RunCounts.names()),
        Column("pass_rate", Float),
        Column("stage", Text),
        Column("failure_class", Text),
        Column("error", Text),
        Column("report_dir", Text),
        Column("parent_run_id", Text),
        Column("pid", Integer),
        Column("host", Text),
        # the run ledger (migration 0002)
        Column("code_version", Text),
        Column("code_dirty", Boolean),
        Column("notebooks_sha256", JSONText),
        Column("reports_sha256", JSONText),
        Column("params", JSONText),
        Column("params_sha256", Text),
        Column("run_user", Text),
        # the ledger chain (migration 0005): the sealed entry, its place in the chain and its hash
        Column("ledger_seq", Integer),
        Column("ledger_sha256", Text),
        Column("ledger_entry", JSONText),
        _pipeline(index=True),
    )
    state = Table(
        "pipeline_state",
        md,
        Column("name", Text, primary_key=True),
        Column("watermark", ts, nullable=False),
        Column("run_id", Text, nullable=False),
        Column("updated_at", ts, nullable=False),
        _pipeline(primary_key=True),
    )
    dead_letter = Table(
        "dead_letter",
        md,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("record_hash", Text, nullable=False),
        Column("raw", Text, nullable=False),
        Column("stage", Text, nullable=False),
        Column("reasons", JSONText, nullable=False),
        Column("status", Text, nullable=False, index=True),
        Column("first_run_id", Text, nullable=False),
        Column("last_run_id", Text, nullable=False),
        Column("first_seen", ts, nullable=False),
        Column("last_seen", ts, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("replayed_run_id", Text),
        _pipeline(),
        UniqueConstraint("pipeline", "record_hash", name="dead_letter_pipeline_record_hash_key"),
    )
    # the window claims on PostgreSQL (``storage/lock.py``; SQLite keeps them as files); migration 0004
    run_locks = Table(
        "run_locks",
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", Text, nullable=False),
        Column("window_since", ts, nullable=False),
        Column("window_until", ts, nullable=False),
        Column("host", Text, nullable=False),
        Column("pid", Integer, nullable=False),
        Column("acquired_at", ts, nullable=False),
        _pipeline(),
    )
    return Tables(md, analytics, runs, state, dead_letter, run_locks)
