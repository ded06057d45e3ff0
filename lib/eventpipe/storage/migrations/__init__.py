"""Alembic scripts for the pipeline's own schema (run by ``eventpipe.storage.migrate``, never by hand)."""
