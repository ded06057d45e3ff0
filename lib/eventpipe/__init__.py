"""eventpipe: an analytics ETL whose stages are parameterised Jupyter notebooks."""

__version__ = "0.1.0"
