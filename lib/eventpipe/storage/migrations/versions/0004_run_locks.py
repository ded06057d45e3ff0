"""``run_locks``, the window claims on PostgreSQL, made by the migrations like every other table.

Before this revision ``storage/lock.py`` created the table itself (PostgreSQL only) the first time a
run claimed a window: a database where it did already has it, exactly as defined here, and keeps it.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    schema = context.config.attributes.get("schema")
    if sa.inspect(op.get_bind()).has_table("run_locks", schema=schema):
        return
    op.create_table(
        "run_locks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("window_since", TS, nullable=False),
        sa.Column("window_until", TS, nullable=False),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("acquired_at", TS, nullable=False),
        schema=schema,
    )


def downgrade() -> None:
    op.drop_table("run_locks", schema=context.config.attributes.get("schema"))
