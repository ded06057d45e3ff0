"""The count of records a client-side window filter dropped (configurable sources): ``outside_window``.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "pipeline_runs",
        sa.Column("outside_window", sa.BigInteger),
        schema=context.config.attributes.get("schema"),
    )


def downgrade() -> None:
    with op.batch_alter_table("pipeline_runs", schema=context.config.attributes.get("schema")) as batch:
        batch.drop_column("outside_window")
