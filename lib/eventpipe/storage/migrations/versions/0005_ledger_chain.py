"""The ledger chain in ``pipeline_runs``: each run's sealed entry, its place in the chain and its hash.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pipeline_runs", schema=context.config.attributes.get("schema")) as batch:
        batch.add_column(sa.Column("ledger_seq", sa.Integer))
        batch.add_column(sa.Column("ledger_sha256", sa.Text))
        batch.add_column(sa.Column("ledger_entry", sa.Text().with_variant(JSONB(), "postgresql")))


def downgrade() -> None:
    with op.batch_alter_table("pipeline_runs", schema=context.config.attributes.get("schema")) as batch:
        batch.drop_column("ledger_entry")
        batch.drop_column("ledger_sha256")
        batch.drop_column("ledger_seq")
