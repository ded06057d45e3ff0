"""The run ledger in ``pipeline_runs``: code version, hashes, parameters, user.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSONText = sa.Text().with_variant(JSONB(), "postgresql")
COLUMNS = (
    ("code_version", sa.Text),
    ("code_dirty", sa.Boolean),
    ("notebooks_sha256", JSONText),
    ("reports_sha256", JSONText),
    ("params", JSONText),
    ("params_sha256", sa.Text),
    ("run_user", sa.Text),
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
