"""``--dlt``: dlt 1.31 as a peer over the same API and window, measured in the same run (``bench/dlt_peer.py``
under ``bench/.dlt-venv``'s interpreter, into a database of its own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from .common import API_KEY, BENCH_DIR, iso, median, say, tail
from .pg import create_database, drop_database


def dlt_python() -> Path:
    """bench/.dlt-venv's python (created with dlt[postgres]==1.31.0 if missing): dlt is no project dependency."""
    sys.path.insert(0, str(BENCH_DIR))
    from dlt_peer import ensure_venv

    return ensure_venv()


def run_dlt_peer(
    py: Path,
    api_url: str,
    since: datetime,
    until: datetime,
    per_page: int,
    repeat: int,
    tmp: Path,
    timeout: float,
    keep: bool,
) -> dict[str, Any]:
    """``bench/dlt_peer.py`` ``repeat`` times into a fresh database of its own (dropped afterwards); each run
    is a fresh dlt pipeline and dataset. Its ``seconds`` are the wall of ``pipeline.run`` only."""
    db_name, db_url = create_database()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    runs: list[dict[str, Any]] = []
    error = None
    try:
        for i in range(repeat):
            log = tmp / f"dlt-{i}.log"
            cmd = [
                str(py),
                str(BENCH_DIR / "dlt_peer.py"),
                "--base-url",
                api_url,
                "--api-key",
                API_KEY,
                "--since",
                iso(since),
                "--until",
                iso(until),
                "--per-page",
                str(per_page),
                "--pg",
                db_url,
            ]
            with open(log, "wb") as err:  # cwd: the temp folder, so no .dlt/ config of the project applies
                proc = subprocess.run(
                    cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=err, timeout=timeout
                )
            if proc.returncode != 0:
                error = f"exit {proc.returncode}: {tail(log, 5)}"
                say(f"dlt peer run {i + 1} failed ({error}); see {log}")
                break
            r = json.loads(proc.stdout.decode().strip().splitlines()[-1])
            r["warnings"] = sum("WARNING" in line for line in log.read_text(errors="replace").splitlines())
            runs.append(r)
            say(
                f"dlt {r['dlt_version']} run {i + 1}/{repeat}: {r['events']:,} items in {r['seconds']:.2f}s "
                f"= {r['records_per_s']:,.0f}/s; {r['dropped']:,} dropped by the key filter, {r['loaded']:,} rows "
                f"in the table, {r['warnings']} warning lines"
            )
    finally:
        if keep:
            say(f"kept: dlt database {db_name}")
        else:
            drop_database(db_name)
    return {
        "records_per_s": median([r["records_per_s"] for r in runs]),
        "seconds": median([r["seconds"] for r in runs]),
        "per_page": per_page,
        "repeat": repeat,
        "runs": runs,
        "error": error,
    }
