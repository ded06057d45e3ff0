#!/usr/bin/env python3
"""Peer measurement: dlt's ``rest_api`` source over the demo API, merged into PostgreSQL, timed in this run.

    bench/.dlt-venv/bin/python bench/dlt_peer.py --base-url http://127.0.0.1:18600 \\
        --since 2024-05-01T00:00:00Z --until 2024-05-01T06:00:00Z \\
        --pg postgresql://postgres@127.0.0.1:5432/dltdev [--per-page 5000]
    python3 bench/dlt_peer.py --setup-venv      # creates bench/.dlt-venv with dlt[postgres]==1.31.0

It mirrors how the quoted dlt figure (PERF-NOTES.md: 68-77 s per 1M) was measured: dlt 1.31, ``rest_api``
source, page-number paginator (pages from 1, ``has_more`` says when to stop), 5,000 items per page, bearer
auth, ``write_disposition="merge"`` on the natural key ``(user_id, timestamp, event)`` into PostgreSQL.

Items that are not objects, or whose key is missing, null, a list or an object, are dropped by a ``processing_steps`` filter, so
the run completes; they are counted in ``dropped``. The three key columns are declared ``text``, because the
API serves keys in several forms (``user_id`` as a number, ``timestamp`` as ISO text or epoch seconds or ms);
with inferred types, those would go to variant columns and leave the key null, and the load would fail.
Everything else is dlt's defaults (its own type inference, variant columns, nested tables for lists).

It prints one JSON line on stdout: ``events`` (items the API served), ``dropped``, ``loaded`` (rows in the table
afterwards), ``seconds`` (wall of ``pipeline.run``: extract, normalize and load; not imports or setup),
``records_per_s`` (events / seconds) and ``dlt_version``.

dlt is not a dependency of the project: this script runs under its own interpreter, ``bench/.dlt-venv``.
Only ``--setup-venv`` runs under any Python 3 (it imports nothing but the standard library).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
VENV = BENCH_DIR / ".dlt-venv"
DLT_REQUIREMENT = "dlt[postgres]==1.31.0"
PRIMARY_KEY = ("user_id", "timestamp", "event")
TABLE = "analytics"


def venv_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path = VENV, quiet: bool = True) -> Path:
    """Create ``venv`` with dlt[postgres]==1.31.0 unless it already has dlt; returns its python."""
    py = venv_python(venv)
    if py.is_file() and subprocess.run([str(py), "-c", "import dlt"], capture_output=True).returncode == 0:
        return py
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", *(["-q"] if quiet else []), DLT_REQUIREMENT], check=True)
    return py


def with_password(url: str) -> str:
    """dlt's PostgresCredentials insists on a password; a server with trust auth ignores it, so a URL
    without one gets a placeholder."""
    from urllib.parse import urlsplit, urlunsplit

    u = urlsplit(url)
    if u.password is not None or "@" not in u.netloc:
        return url
    user, host = u.netloc.rsplit("@", 1)
    return urlunsplit(u._replace(netloc=f"{user}:unused@{host}"))


def run_peer(a: argparse.Namespace) -> dict:
    # no telemetry (no network here); set before dlt reads its configuration
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import dlt
    from dlt.sources.rest_api import rest_api_source

    counts = {"kept": 0, "dropped": 0}

    def keep(item: object) -> bool:
        # a key that is missing, null, or a list or object (dlt would move it to a nested table) leaves the
        # key column null, and the merge's NOT NULL key fails the whole load
        ok = isinstance(item, dict) and all(isinstance(item.get(k), (str, int, float)) for k in PRIMARY_KEY)
        counts["kept" if ok else "dropped"] += 1
        return ok

    source = rest_api_source(
        {
            "client": {
                "base_url": a.base_url.rstrip("/") + "/",
                "auth": {"type": "bearer", "token": a.api_key},
                "paginator": {
                    "type": "page_number",
                    "base_page": 1,
                    "page_param": "page",
                    "total_path": None,
                    "has_more_path": "has_more",
                },
            },
            "resource_defaults": {"write_disposition": "merge", "primary_key": list(PRIMARY_KEY)},
            "resources": [
                {
                    "name": TABLE,
                    "endpoint": {
                        "path": "analytics",
                        "data_selector": "items",
                        "params": {"since": a.since, "until": a.until, "per_page": a.per_page},
                    },
                    # the API serves a key in several forms (user_id as a number, timestamp as ISO text or epoch
                    # numbers): as text, every form fits the key column, instead of going to a variant column and
                    # leaving the key null
                    "columns": {k: {"data_type": "text"} for k in PRIMARY_KEY},
                    "processing_steps": [{"filter": keep}],
                }
            ],
        }
    )

    pipelines_dir = tempfile.mkdtemp(prefix="dlt-peer-")  # no state from earlier runs
    dataset = f"dlt_peer_{uuid.uuid4().hex[:8]}"  # a fresh schema in the destination database
    pipeline = dlt.pipeline(
        pipeline_name="dlt_peer",
        pipelines_dir=pipelines_dir,
        dataset_name=dataset,
        destination=dlt.destinations.postgres(credentials=with_password(a.pg)),
    )
    try:
        t0 = time.perf_counter()
        pipeline.run(source)
        seconds = time.perf_counter() - t0
        with pipeline.sql_client() as client:
            loaded = client.execute_sql(f"SELECT count(*) FROM {client.make_qualified_table_name(TABLE)}")[0][
                0
            ]
            if not a.keep:  # the dataset and its _staging twin (the merge's)
                client.drop_dataset()
                with client.with_staging_dataset():
                    if client.has_dataset():
                        client.drop_dataset()
    finally:
        shutil.rmtree(pipelines_dir, ignore_errors=True)
    events = counts["kept"] + counts["dropped"]
    return {
        "events": events,
        "dropped": counts["dropped"],
        "loaded": loaded,
        "seconds": seconds,
        "records_per_s": events / seconds if seconds else None,
        "dlt_version": dlt.__version__,
        "per_page": a.per_page,
        "dataset": dataset if a.keep else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="bench/dlt_peer.py")
    p.add_argument(
        "--setup-venv",
        action="store_true",
        help=f"only create {VENV.relative_to(BENCH_DIR.parent)} with {DLT_REQUIREMENT} (if missing)",
    )
    p.add_argument("--base-url", help="the demo API, e.g. http://127.0.0.1:18600")
    p.add_argument(
        "--api-key",
        default=os.environ.get("API_KEY", "demo-key"),
        help="bearer token (default $API_KEY or demo-key)",
    )
    p.add_argument("--since", help="window start, ISO 8601")
    p.add_argument("--until", help="window end, ISO 8601")
    p.add_argument("--per-page", type=int, default=5000, help="items per page (default 5000)")
    p.add_argument("--pg", help="destination database URL, e.g. postgresql://postgres@127.0.0.1:5432/dltdev")
    p.add_argument(
        "--keep", action="store_true", help="keep the dataset (schema) instead of dropping it afterwards"
    )
    a = p.parse_args(argv)
    if a.setup_venv:
        print(ensure_venv(quiet=False))
        return 0
    missing = [o for o in ("base_url", "since", "until", "pg") if not getattr(a, o)]
    if missing:
        p.error("required: " + ", ".join("--" + o.replace("_", "-") for o in missing))
    print(json.dumps(run_peer(a)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
