"""The two outside limits measured in the same run: (a) a bare ``requests`` loop over the same pages, and
(b) a raw ``COPY`` of the loaded rows into an empty copy of ``analytics`` (same columns, key and index)."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from .common import API_KEY, iso, say
from .pg import COPY_COLUMN_LIST, checkpoint, execute, pg_connect

PARSERS = ("json", "orjson")  # the figure is .json(); orjson is for reference


def bare_requests(
    url: str, since: datetime, until: datetime, per_page: int, parser: str
) -> tuple[int, float]:
    """Every page of the window with a plain Session: no retries, no Parquet, nothing kept."""
    import orjson
    import requests

    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"})
    window = {"since": iso(since), "until": iso(until), "per_page": per_page}
    n, page = 0, 1
    t0 = time.perf_counter()
    while True:
        r = session.get(f"{url}/analytics", params={**window, "page": page}, timeout=60)
        r.raise_for_status()
        body = r.json() if parser == "json" else orjson.loads(r.content)
        n += len(body["items"])
        if not body["has_more"]:
            break
        page += 1
    elapsed = time.perf_counter() - t0
    session.close()
    return n, elapsed


def fetch_limits(
    url: str, since: datetime, until: datetime, per_page: int, repeat: int
) -> dict[str, list[float]]:
    """Limit (a), ``repeat`` times with each parser: ``requests_<parser>_n`` items in ``requests_<parser>_s``."""
    limits: dict[str, list[float]] = {}
    for parser in PARSERS:
        limits[f"requests_{parser}_n"], limits[f"requests_{parser}_s"] = [], []
    for _ in range(repeat):
        for parser in PARSERS:
            n, s = bare_requests(url, since, until, per_page, parser)
            limits[f"requests_{parser}_n"].append(n)
            limits[f"requests_{parser}_s"].append(s)
            say(f"limit: bare requests ({parser}) {n:,} items in {s:.2f}s = {n / s:,.0f}/s")
    return limits


def export_clean_csv(db_url: str, path: Path) -> int:
    """The loaded rows as CSV, as the limit's input (written once, before any timing)."""
    conn = pg_connect(db_url)
    with conn, conn.cursor() as cur, open(path, "wb") as f:
        cur.copy_expert(f"COPY (SELECT {COPY_COLUMN_LIST} FROM analytics) TO STDOUT WITH (FORMAT csv)", f)
        cur.execute("SELECT count(*) FROM analytics")
        n = cur.fetchone()[0]
        cur.execute("DROP TABLE IF EXISTS bench_copy")
        # same columns, types, NOT NULLs, primary key (user_id, timestamp, event_type) and event_date index
        cur.execute("CREATE TABLE bench_copy (LIKE analytics INCLUDING ALL)")
    conn.close()
    return n


def raw_copy(db_url: str, path: Path) -> float:
    """Seconds for ``COPY bench_copy FROM STDIN`` of the CSV into the empty indexed copy, commit included."""
    conn = pg_connect(db_url)
    with conn.cursor() as cur:
        cur.execute("TRUNCATE bench_copy")
        conn.commit()
        checkpoint()
        with open(path, "rb") as f:
            t0 = time.perf_counter()
            cur.copy_expert(f"COPY bench_copy ({COPY_COLUMN_LIST}) FROM STDIN WITH (FORMAT csv)", f)
            conn.commit()
            elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def copy_limit(db_url: str, csv_path: Path, repeat: int) -> tuple[int, list[float]]:
    """Limit (b): the rows the pipeline loaded, exported to ``csv_path`` once, then ``COPY``'d ``repeat``
    times into an empty indexed copy of ``analytics``; the rows and each run's seconds."""
    rows = export_clean_csv(db_url, csv_path)
    seconds = []
    for _ in range(repeat):
        s = raw_copy(db_url, csv_path)
        seconds.append(s)
        say(f"limit: raw COPY {rows:,} rows in {s:.2f}s = {rows / s:,.0f}/s")
    execute(db_url, "DROP TABLE IF EXISTS bench_copy")
    return rows, seconds
