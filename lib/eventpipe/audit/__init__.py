"""The audit trail: HTML reports, the run index, the run ledger, schema migrations and metrics export.

Below orchestration in the import layers: it reads and writes report folders and the
store, and never imports the runner, the kernel or the CLI.
"""
