"""``--existing-rows N``: the window loaded into a table that already holds N other rows (a database built
once and kept), beside a raw ``COPY`` into the same table; and how long the status and load summaries take."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .common import PY, iso, median, rate, say, work_s
from .pg import (
    COPY_COLUMN_LIST,
    checkpoint,
    create_database,
    database_exists,
    database_url,
    drop_database,
    pg_connect,
)
from .pipeline import Target, run_papermill
from .snapshot import Code, child_parser, import_measured

EXISTING_START = datetime(2021, 1, 1, tzinfo=timezone.utc)  # the pre-filled rows: one a second from here


def existing_database(n: int, code: Code, env: dict[str, str], tmp: Path) -> str:
    """A database whose ``analytics`` holds ``n`` rows outside the bench window: built once (a marker table
    records ``n`` and the schema's migration), kept between benchmark runs and reused."""
    name = f"eventpipe_bench_existing_{n}"
    url = database_url(name)
    env = env | {"DATABASE_URL": url}
    revision = schema_child(code, env, tmp, probe=True) if database_exists(name) else None
    if revision is not None:
        conn = pg_connect(url)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('bench_existing') IS NOT NULL")
            marker = None
            if cur.fetchone()[0]:
                cur.execute("SELECT n, revision FROM bench_existing")
                marker = cur.fetchone()
        conn.close()
        if marker == (n, revision):
            say(f"existing rows: reusing database {name} ({n:,} rows)")
            return url
    drop_database(name)
    create_database(name)
    revision = schema_child(code, env, tmp, probe=False)
    say(f"existing rows: filling {name} with {n:,} rows (once; kept for later runs)")
    t0 = time.perf_counter()
    conn = pg_connect(url)
    with conn, conn.cursor() as cur:
        # in key order (user, then time), so the primary key and the date index grow at their right edge
        cur.execute(
            """
            INSERT INTO analytics (user_id, "timestamp", event_type, session_id, properties, event_date,
                                   event_hour, run_id, loaded_at)
            SELECT 'x' || lpad((i / 1000)::text, 9, '0'), t, 'page_view', 's' || (i %% 5000),
                   jsonb_build_object('i', i), (t AT TIME ZONE 'UTC')::date,
                   extract(hour FROM t AT TIME ZONE 'UTC')::smallint, 'bench-fill', now()
            FROM generate_series(0, %s - 1) AS i, LATERAL (SELECT %s + i * interval '1 second' AS t) AS x
            """,
            (n, EXISTING_START),
        )
        cur.execute(
            "INSERT INTO pipeline_runs (run_id, kind, status, started_at, finished_at, inserted) "
            "VALUES ('bench-fill', 'bench', 'succeeded', now(), now(), %s)",
            (n,),
        )
        cur.execute("CREATE TABLE bench_existing (n bigint, revision text)")
        cur.execute("INSERT INTO bench_existing VALUES (%s, %s)", (n, revision))
    conn.autocommit = True
    conn.cursor().execute("VACUUM ANALYZE analytics")
    conn.close()
    say(f"existing rows: filled in {time.perf_counter() - t0:.0f}s")
    return url


def schema_child(code: Code, env: dict[str, str], tmp: Path, probe: bool) -> str | None:
    """The pipeline's tables created (``probe``: only read) in ``DATABASE_URL``; returns the migration."""
    out = tmp / "schema.json"
    cmd = [*code.child_cmd("_summary", out), "--schema", "probe" if probe else "create"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        if probe:
            return None
        raise SystemExit(f"creating the pipeline's tables failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())["revision"]


def reset_existing(db_url: str, since: datetime, until: datetime) -> None:
    """Back to the pre-filled rows alone: the bench window's rows, dead letters and runs go; vacuumed."""
    conn = pg_connect(db_url)
    with conn, conn.cursor() as cur:
        cur.execute(
            'DELETE FROM analytics WHERE event_date >= %s AND event_date <= %s AND "timestamp" >= %s',
            (since.date(), until.date(), since),
        )
        cur.execute("TRUNCATE dead_letter, pipeline_state")
        cur.execute("DELETE FROM pipeline_runs WHERE run_id <> 'bench-fill'")
    conn.autocommit = True
    conn.cursor().execute("VACUUM analytics")
    conn.close()
    checkpoint()


def copy_rolled_back(db_url: str, path: Path) -> float:
    """Seconds for ``COPY analytics FROM STDIN`` of the CSV into the filled table, then rolled back (the
    table keeps its rows for the next run; the commit, ~ms, is not counted)."""
    conn = pg_connect(db_url)
    with conn.cursor() as cur, open(path, "rb") as f:
        t0 = time.perf_counter()
        cur.copy_expert(f"COPY analytics ({COPY_COLUMN_LIST}) FROM STDIN WITH (FORMAT csv)", f)
        elapsed = time.perf_counter() - t0
    conn.rollback()
    conn.close()
    return elapsed


def summary_timings(t: Target, tmp: Path) -> dict[str, Any]:
    """Seconds of ``Store.status()`` and of the load notebook's ``window_summary`` (medians of 3), in a child
    process of the measured code; and the wall time of ``run_pipeline.py status`` (Python's start included)."""
    out = tmp / "summary.json"
    cmd = [*t.code.child_cmd("_summary", out), "--since", iso(t.since), "--until", iso(t.until)]
    subprocess.run(cmd, env=t.env, check=True, capture_output=True, timeout=600)
    timings = json.loads(out.read_text())
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(
            [PY, t.code.run_pipeline, "status"], env=t.env, check=True, capture_output=True, timeout=600
        )
        walls.append(time.perf_counter() - t0)
    timings["status_cli_wall_s"] = median(walls)
    return timings


def summary_child(argv: list[str]) -> int:
    """``bench/run.py _summary ...``: create/probe the schema, or time the status and window summaries."""
    p = child_parser("_summary")
    p.add_argument("--schema", choices=("probe", "create"))
    p.add_argument("--since")
    p.add_argument("--until")
    a = p.parse_args(argv)
    import_measured(a.code_root)
    from eventpipe.settings import load_settings, parse_instant
    from eventpipe.storage.migrate import VERSION_TABLE
    from eventpipe.storage.store import Store

    store = Store(load_settings(a.params_file or None, []))
    if a.schema:
        from sqlalchemy import text

        if a.schema == "create":
            store.create_schema()
        with store.reader.connect() as conn:
            revision = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        Path(a.out).write_text(json.dumps({"revision": revision}))
        return 0
    since, until = parse_instant(a.since), parse_instant(a.until)
    status, window = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        store.status()
        status.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        store.window_summary(since, until)
        window.append(time.perf_counter() - t0)
    Path(a.out).write_text(json.dumps({"status_s": median(status), "window_summary_s": median(window)}))
    return 0


def existing_rows_bench(
    t: Target, rows_before: int, repeat: int, csv_path: Path, tmp: Path
) -> dict[str, Any]:
    """Per repeat, a raw COPY of the window's rows into the filled table (rolled back), then, on the table
    vacuumed again, the pipeline's run of the window into it; and the status and load-summary timings."""
    url = existing_database(rows_before, t.code, t.env, tmp)
    t = replace(t, env=t.env | {"DATABASE_URL": url})
    copies, loads, walls = [], [], []
    rows = 0
    for i in range(repeat):
        reset_existing(url, t.since, t.until)
        s = copy_rolled_back(url, csv_path)
        copies.append(s)
        say(f"existing rows: raw COPY into {rows_before:,} rows in {s:.2f}s")
        # the rolled-back COPY left a dead tuple, and its index entries, under every key the pipeline is about
        # to insert: each insert's unique check would visit them (~1.5 s at 1M). Both start from a vacuumed table.
        reset_existing(url, t.since, t.until)
        pm = run_papermill(t, tmp / f"existing-{i}")
        load = pm.metrics["stages"]["load"]
        rows = load["loaded"]
        loads.append(work_s(load))
        walls.append(pm.wall_s)
        say(
            f"existing rows: pipeline load {rows:,} rows in {work_s(load):.2f}s (end to end {pm.wall_s:.1f}s)"
        )
    timings = summary_timings(t, tmp)
    say(
        f"existing rows: status {timings['status_s'] * 1000:.0f} ms, load summary "
        f"{timings['window_summary_s'] * 1000:.0f} ms, `status` command {timings['status_cli_wall_s']:.2f}s"
    )
    reset_existing(url, t.since, t.until)
    copy_s, load_s = median(copies), median(loads)
    return {
        "rows_before": rows_before,
        "database": url.rsplit("/", 1)[1],
        "rows": rows,
        "copy_s": copy_s,
        "copy_runs_s": copies,
        "load_s": load_s,
        "load_runs_s": loads,
        "end_to_end_s": median(walls),
        "copy_records_per_s": rate(rows, copy_s),
        "load_records_per_s": rate(rows, load_s),
        "load_vs_copy": (copy_s / load_s) if copy_s and load_s else None,
        **timings,
    }
