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

JSONText = sa.Text().with_variant(JSONB(), "postgresql")
COLUMNS = (
    ("ledger_seq", sa.Integer),
    ("ledger_sha256", sa.Text),
    ("ledger_entry", JSONText),
)


def upgrade() -> None:
    schema = context.config.attributes.get("schema")
    for name, type_ in COLUMNS:
        op.add_column("pipeline_runs", sa.Column(name, type_), schema=schema)


def downgrade() -> None:
    schema = context.config.attributes.get("schema")
    with op.batch_alter_table("pipeline_runs", schema=schema) as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
