"""Baseline: the four tables as the release before the ledger created them (commit 6381454).

A database made by that release already has them: ``migrate.upgrade`` stamps it at
this revision instead of running it, and the next revisions alter it in place.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSONText = sa.Text().with_variant(JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
COUNTS = (
    "extracted",
    "rejected_transform",
    "duplicates",
    "transformed",
    "passed",
    "rejected_quality",
    "loaded",
    "inserted",
    "updated",
    "unchanged",
    "dead_letters_new",
    "dead_letters_seen",
)


def upgrade() -> None:
    schema = context.config.attributes.get("schema")
    op.create_table(
        "analytics",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("timestamp", TS, primary_key=True),
        sa.Column("event_type", sa.Text, primary_key=True),
        sa.Column("session_id", sa.Text),
        sa.Column("properties", JSONText, nullable=False),
        sa.Column("event_date", sa.Date, nullable=False),
        sa.Column("event_hour", sa.SmallInteger, nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("loaded_at", TS, nullable=False),
        schema=schema,
    )
    op.create_index("ix_analytics_event_date", "analytics", ["event_date"], schema=schema)
    op.create_table(
        "pipeline_runs",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("window_since", TS),
        sa.Column("window_until", TS),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS),
        sa.Column("duration_s", sa.Float),
        *(sa.Column(c, sa.BigInteger) for c in COUNTS),
        sa.Column("pass_rate", sa.Float),
        sa.Column("stage", sa.Text),
        sa.Column("failure_class", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("report_dir", sa.Text),
        sa.Column("parent_run_id", sa.Text),
        sa.Column("pid", sa.Integer),
        sa.Column("host", sa.Text),
        schema=schema,
    )
    op.create_index("ix_pipeline_runs_status", "pipeline_runs", ["status"], schema=schema)
    op.create_table(
        "pipeline_state",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("watermark", TS, nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        schema=schema,
    )
    op.create_table(
        "dead_letter",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("record_hash", sa.Text, nullable=False),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("reasons", JSONText, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("first_run_id", sa.Text, nullable=False),
        sa.Column("last_run_id", sa.Text, nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("replayed_run_id", sa.Text),
        sa.UniqueConstraint("record_hash", name="dead_letter_record_hash_key"),
        schema=schema,
    )
    op.create_index("ix_dead_letter_status", "dead_letter", ["status"], schema=schema)


def downgrade() -> None:
    schema = context.config.attributes.get("schema")
    for table in ("dead_letter", "pipeline_state", "pipeline_runs", "analytics"):
        op.drop_table(table, schema=schema)
