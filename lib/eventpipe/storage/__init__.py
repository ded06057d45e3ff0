"""Storage: the pipeline's tables, run records, watermark, run lock and loaders (SQLAlchemy 2 Core)."""
