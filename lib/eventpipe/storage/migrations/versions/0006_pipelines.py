"""Named pipelines: a ``pipeline`` column on every table of run state; what was there is pipeline ``default``.

The watermark is keyed by (pipeline, name), a dead letter is one per (pipeline, record_hash), a run and a
window claim say whose they are. Existing rows get ``default`` through the column's server default, so a
database of the release before keeps its state as the pipeline that runs without ``--pipeline``.
On SQLite the constraint changes rebuild the table (Alembic's batch mode); on PostgreSQL they are ALTERs.

Revision ID: 0006
Revises: 0005
"""

import warnings

import sqlalchemy as sa
from alembic import context, op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _pipeline() -> sa.Column:
    return sa.Column("pipeline", sa.Text, nullable=False, server_default="default")


def _drop_primary_key(batch: object) -> None:
    # PostgreSQL named the key; SQLite's has no name, and its rebuilt table takes the one created next instead
    if op.get_bind().dialect.name != "sqlite":
        batch.drop_constraint("pipeline_state_pkey", type_="primary")  # type: ignore[attr-defined]


def upgrade() -> None:
    schema = context.config.attributes.get("schema")
    op.add_column("pipeline_runs", _pipeline(), schema=schema)
    op.create_index("ix_pipeline_runs_pipeline", "pipeline_runs", ["pipeline"], schema=schema)
    # run_locks may outlive the other tables (revision 0004 keeps one it finds): it may have the column
    locks = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("run_locks", schema=schema)}
    if "pipeline" not in locks:
        op.add_column("run_locks", _pipeline(), schema=schema)
    # SQLite rebuilds the table: its new key replaces the old one, which SQLAlchemy warns about
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Table '_alembic_tmp_pipeline_state'", sa.exc.SAWarning)
        with op.batch_alter_table("pipeline_state", schema=schema) as batch:
            batch.add_column(_pipeline())
            _drop_primary_key(batch)
            batch.create_primary_key("pipeline_state_pkey", ["pipeline", "name"])
    with op.batch_alter_table("dead_letter", schema=schema) as batch:
        batch.add_column(_pipeline())
        batch.drop_constraint("dead_letter_record_hash_key", type_="unique")
        batch.create_unique_constraint("dead_letter_pipeline_record_hash_key", ["pipeline", "record_hash"])


def downgrade() -> None:
    schema = context.config.attributes.get("schema")
    with op.batch_alter_table("dead_letter", schema=schema) as batch:
        batch.drop_constraint("dead_letter_pipeline_record_hash_key", type_="unique")
        batch.create_unique_constraint("dead_letter_record_hash_key", ["record_hash"])
        batch.drop_column("pipeline")
    with op.batch_alter_table("pipeline_state", schema=schema) as batch:
        _drop_primary_key(batch)
        batch.create_primary_key("pipeline_state_pkey", ["name"])
        batch.drop_column("pipeline")
    op.drop_column("run_locks", "pipeline", schema=schema)
    op.drop_index("ix_pipeline_runs_pipeline", "pipeline_runs", schema=schema)
    op.drop_column("pipeline_runs", "pipeline", schema=schema)
