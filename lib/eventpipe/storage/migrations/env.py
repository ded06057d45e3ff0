"""Alembic environment: always online, on the connection and schema that ``migrate.upgrade`` passes in."""

from alembic import context

from eventpipe.storage.migrate import VERSION_TABLE

config = context.config
context.configure(
    connection=config.attributes["connection"],
    version_table=VERSION_TABLE,
    version_table_schema=config.attributes.get("schema"),
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
