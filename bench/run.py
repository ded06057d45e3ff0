#!/usr/bin/env python3
"""Benchmark: the whole pipeline end to end and per stage, beside raw limits measured in the same run.

    .venv/bin/python bench/run.py --events 1000000 [--per-page 1000] [--repeat 1] [--profile]

What it does (see bench/README.md for what each figure means):

0. copies lib/, notebooks/, params/ and run_pipeline.py to a temp folder and runs that copy (first on
   PYTHONPATH, kernels included), so edits made to lib/ while it runs do not mix into the figures;
1. starts the demo API in its own process (``run_pipeline.py demo-api``), over a past window
   that holds ~N events, and warms it up (the API generates its events lazily, per hour);
2. creates a fresh PostgreSQL database (dropped at the end);
3. limit: a bare ``requests.Session`` loop over the same pages (``.json()``; and orjson, for reference);
4. the pipeline through papermill: ``run_pipeline.py backfill`` over the window as one partition,
   wall seconds, CPU seconds and the peak RSS of the whole process tree (runner + kernels, sampled every
   0.1 s); per-stage seconds come from the run's ``reports/<run_id>/metrics.json``, per-stage RSS and CPU
   from the samples between the runner's ``stage X: executing`` and ``stage X: done`` log lines;
5. limit: raw ``COPY … FROM STDIN`` of the loaded rows (as CSV) into an empty copy of ``analytics``
   (same columns, primary key and index);
6. the same three stage functions called directly in one Python process (no notebooks, no kernels),
   on emptied tables: ``notebook_overhead_s`` = papermill wall − direct wall;
7. optionally (``--profile``) the slowest stage once more, directly, under cProfile;
8. optionally (``--dlt``) dlt 1.31 as a peer over the same API and window (``bench/dlt_peer.py`` in
   ``bench/.dlt-venv``, into a database of its own): ``ratios.end_to_end_vs_dlt_same_run``.

It prints one table and writes ``bench/results.json``. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import platform
import pstats
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"
CODE = (
    ROOT  # the code measured: a snapshot of lib/, notebooks/, params/ and run_pipeline.py (see snapshot_code)
)
SNAPSHOT_PARTS = ("lib", "notebooks", "params", "run_pipeline.py", "pyproject.toml")
PY = sys.executable
STAGES = ("extract", "transform_quality", "load")
PIPELINE_TABLES = ("analytics", "dead_letter", "pipeline_runs", "pipeline_state")
COPY_COLUMNS = (
    "user_id",
    "timestamp",
    "event_type",
    "session_id",
    "properties",
    "event_date",
    "event_hour",
    "run_id",
    "loaded_at",
)
DLT_RECORDS_PER_S = (
    13_000  # PERF-NOTES.md: dlt 1.31 rest_api + merge, 68-77 s per 1M (13-15k/s); not re-measured
)
WINDOW_START = datetime(2024, 5, 1, tzinfo=timezone.utc)  # in the past: the live demo API serves it whole
DEMO_START = "2024-01-01"
DEMO_DIRTY, DEMO_DUP = 0.02, 0.02  # the demo-api defaults
PG_ADMIN = os.environ.get("EVENTPIPE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
API_KEY = "demo-key"


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def rate(n: int | None, seconds: float | None) -> float | None:
    return n / seconds if n is not None and seconds else None


# -- process-tree RSS sampling ----------------------------------------------------------------------


class TreeSampler:
    """Every ``interval`` s: the summed RSS and PSS of a process and all its descendants, and each one's CPU
    seconds. RSS counts a page shared by two processes (the libraries the kernel and a transform worker
    both map) in each; PSS splits it between them, so the PSS sum is what the tree holds."""

    def __init__(self, pid: int, interval: float = 0.1):
        import psutil

        self.psutil = psutil
        self.root = psutil.Process(pid)
        self.interval = interval
        # (time.time(), RSS bytes, PSS bytes, pid -> CPU s)
        self.samples: list[tuple[float, int, int, dict[int, float]]] = []
        self._procs: dict[int, Any] = {pid: self.root}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        ps = self.psutil
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except (ps.NoSuchProcess, ps.ZombieProcess):
            return
        total, pss, cpu = 0, 0, {}
        for p in procs:
            p = self._procs.setdefault(p.pid, p)  # keep one Process object per pid
            try:
                mem = p.memory_full_info()  # /proc/PID/smaps_rollup: ~0.1 ms
                total += mem.rss
                pss += mem.pss
                t = p.cpu_times()
                cpu[p.pid] = t.user + t.system
            except (ps.NoSuchProcess, ps.AccessDenied, ps.ZombieProcess):
                continue
        self.samples.append((time.time(), total, pss, cpu))

    def _loop(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                return

    def peak_mb(
        self, since: float | None = None, until: float | None = None, pss: bool = False
    ) -> float | None:
        size = [(t, p if pss else r) for t, r, p, _ in self.samples]
        vals = [b for t, b in size if (since is None or t >= since) and (until is None or t <= until)]
        if (
            not vals and since is not None
        ):  # a window shorter than the interval: the next sample stands for it
            vals = [b for t, b in size if t >= since][:1]
        return max(vals) / 2**20 if vals else None

    def cpu_between(self, since: float, until: float) -> float | None:
        """CPU seconds the tree spent in ``[since, until]`` (to within one sampling interval)."""
        before: dict[int, float] = {}
        inside: dict[int, float] = {}
        for t, _, _, cpu in self.samples:
            if t < since:
                before.update(cpu)
            elif t <= until:
                inside.update(cpu)
        if not inside:
            return None
        return sum(v - before.get(pid, 0.0) for pid, v in inside.items())


@dataclass
class CpuUse:
    """CPU seconds while one measured command ran: its own tree, the demo API, and the whole machine."""

    tree_s: float = 0.0
    api_s: float | None = None
    machine_busy_s: float = 0.0

    @property
    def others_s(self) -> float:
        """Busy CPU not spent by the command or the API: PostgreSQL (ours too) and anything else running."""
        return max(0.0, self.machine_busy_s - self.tree_s - (self.api_s or 0.0))


def _busy(t: Any) -> float:
    return (
        sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    )


def _proc_cpu(pid: int | None) -> float | None:
    import psutil

    try:
        t = psutil.Process(pid).cpu_times() if pid else None
    except psutil.Error:
        return None
    return t.user + t.system if t else None


API_PID: int | None = None  # the demo API's process, for CpuUse


STAGE_LINE = re.compile(rb"stage (\w+): (executing|done)")  # the runner's log lines around each notebook


def run_sampled(
    cmd: list[str], env: dict[str, str], log_path: Path, timeout: float
) -> tuple[int, float, TreeSampler, CpuUse, list[tuple[float, str, str]]]:
    """Run a command with stdout+stderr to a log file; wall seconds, RSS samples, CPU use of its tree, and
    the arrival time of each runner line ``stage X: executing|done``."""
    import resource

    import psutil

    marks: list[tuple[float, str, str]] = []

    def copy_output(stream: Any, log: Any) -> None:
        for line in stream:
            m = STAGE_LINE.search(line)
            if m:
                marks.append((time.time(), m.group(1).decode(), m.group(2).decode()))
            log.write(line)

    with open(log_path, "wb") as log:
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the command and every descendant it waited for
        sys0, api0 = psutil.cpu_times(), _proc_cpu(API_PID)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=CODE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        reader = threading.Thread(target=copy_output, args=(proc.stdout, log), daemon=True)
        reader.start()
        with TreeSampler(proc.pid) as sampler:
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise SystemExit(f"{cmd[2]} took longer than {timeout}s: see {log_path}") from None
        wall = time.perf_counter() - t0
        reader.join(timeout=10)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        sys1, api1 = psutil.cpu_times(), _proc_cpu(API_PID)
    cpu = CpuUse(
        tree_s=(ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
        api_s=(api1 - api0) if api0 is not None and api1 is not None else None,
        machine_busy_s=_busy(sys1) - _busy(sys0),
    )
    return rc, wall, sampler, cpu, marks


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


# -- the demo API -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DemoApi:
    """``run_pipeline.py demo-api`` in its own process, so its CPU is not counted in the pipeline's."""

    def __init__(
        self, events_per_hour: int, log_path: Path, style: str = "contract", latency_ms: float = 0.0
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**code_env(), "API_KEY": API_KEY}
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [
                PY,
                str(CODE / "run_pipeline.py"),
                "demo-api",
                "--port",
                str(self.port),
                "--events-per-hour",
                str(events_per_hour),
                "--start",
                DEMO_START,
                "--dirty-share",
                str(DEMO_DIRTY),
                "--duplicate-share",
                str(DEMO_DUP),
                "--style",
                style,
                "--latency-ms",
                str(latency_ms),
            ],
            cwd=CODE,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the demo API exited with code {self.proc.returncode}")
            try:
                if requests.get(f"{self.url}/health", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise SystemExit(f"the demo API did not answer on {self.url} within {timeout}s")

    def warm_up(self, since: datetime, until: datetime) -> float:
        """One tiny page of the window: the API generates (and caches) every hour of it."""
        import requests

        t0 = time.perf_counter()
        r = requests.get(
            f"{self.url}/analytics",
            params={"page": 1, "per_page": 1, "since": iso(since), "until": iso(until)},
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=1800,
        )
        r.raise_for_status()
        return time.perf_counter() - t0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# -- limit (a): bare requests loop ------------------------------------------------------------------------


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


# -- one source style: extract against a bare loop over the same pages ------------------------------------

STYLE_SECRETS = {
    "contract": {"API_KEY": API_KEY},
    "posthog": {"POSTHOG_API_KEY": API_KEY},
    "mixpanel": {"MIXPANEL_USER": "demo-user", "MIXPANEL_SECRET": API_KEY},
    "amplitude": {"AMPLITUDE_API_KEY": "demo-user", "AMPLITUDE_SECRET_KEY": API_KEY},
    "json-server": {},
    "offset": {"EVENTS_API_KEY": API_KEY},
    "cursor": {"EVENTS_TOKEN": API_KEY},
}


def style_client(style: str, url: str, per_page: int, extra: list[str] | None = None) -> Any:
    """The pipeline's source client configured by the style's preset, pointed at the demo API."""
    from eventpipe.settings import load_settings
    from eventpipe.source.client import SourceClient
    from eventpipe.source.config import SourceConfig

    env = {"API_BASE_URL": url, **STYLE_SECRETS[style]}
    size = {
        "posthog": f"source.params.limit={per_page}",
        "json-server": f"source.params._limit={per_page}",
        "cursor": f"source.params.limit={per_page}",
    }
    overrides = [f"api.per_page={per_page}", *([size[style]] if style in size else []), *(extra or [])]
    settings = load_settings(str(CODE / "params" / "sources" / f"{style}.yaml"), overrides, env=env)
    return SourceClient(url, SourceConfig.from_settings(settings, env), settings.api)


def bare_pages(style: str, urls: list[str], auth: Any) -> tuple[int, float]:
    """The same URLs with a plain Session: body read, un-gzipped, parsed; no limits, no Parquet, nothing kept."""
    import gzip
    import io
    import zipfile

    import orjson
    import requests

    session = requests.Session()
    session.auth = auth
    session.headers.update({"Authorization": f"Bearer {API_KEY}"} if auth is None else {})
    if style == "offset":
        session.headers.update({"X-API-Key": API_KEY})
    n = 0
    t0 = time.perf_counter()
    for url in urls:
        r = session.get(url, timeout=600)
        r.raise_for_status()
        if style == "mixpanel":
            n += sum(1 for line in r.content.splitlines() if orjson.loads(line) is not None)
        elif style == "amplitude":
            with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
                for name in zf.namelist():
                    n += sum(1 for line in gzip.decompress(zf.read(name)).splitlines() if orjson.loads(line))
        else:
            body = orjson.loads(r.content)
            if not isinstance(body, list):
                body = next(body[k] for k in ("items", "results", "data", "events") if k in body)
            n += len(body)
    elapsed = time.perf_counter() - t0
    session.close()
    return n, elapsed


def style_bench(args: argparse.Namespace, since: datetime, until: datetime, per_hour: int, tmp: Path) -> int:
    """``--style``: extract (the pipeline's client and raw parts) against a bare loop over the same pages."""
    from eventpipe.source.extract import extract_window

    api = DemoApi(per_hour, tmp / "demo-api.log", style=args.style)
    try:
        api.wait_ready()
        rows: dict[str, list[float]] = {"extract_s": [], "bare_s": []}
        records = bare_n = 0
        for i in range(args.limit_repeat + 1):  # the first round warms the API's cache and is not counted
            client = style_client(args.style, api.url, args.per_page)
            urls: list[str] = []
            client.session.hooks["response"].append(lambda r, *a, _urls=urls, **k: _urls.append(r.url))
            t0 = time.perf_counter()
            res = extract_window(client, since, until, tmp / f"raw-{i}", 100_000)
            extract_s = time.perf_counter() - t0
            bare_n, bare_s = bare_pages(args.style, urls, client.session.auth)
            records = res.records
            if i:
                rows["extract_s"].append(extract_s)
                rows["bare_s"].append(bare_s)
    finally:
        api.stop()
    ext, bare = median(rows["extract_s"]), median(rows["bare_s"])
    assert ext and bare
    print(f"style {args.style}: {records:,} records ({bare_n:,} in the bare loop), {len(urls)} requests")
    print(f"  extract   {ext:8.2f}s  {records / ext:12,.0f} records/s")
    print(f"  bare loop {bare:8.2f}s  {bare_n / bare:12,.0f} records/s")
    print(f"  extract at {bare / ext:.0%} of the bare loop (medians of {args.limit_repeat})")
    return 0


def latency_bench(
    args: argparse.Namespace, since: datetime, until: datetime, per_hour: int, tmp: Path
) -> int:
    """``--latency-ms``: extract from an API that takes that long per answer, at each ``--concurrency``,
    against the latency-bound limit ``pages x latency / concurrency`` (the pages this very run needed)."""
    from eventpipe.source.extract import extract_window

    levels = [int(c) for c in args.concurrency.split(",")]
    style = args.style or "contract"
    api = DemoApi(per_hour, tmp / "demo-api.log", style=style, latency_ms=args.latency_ms)
    latency = args.latency_ms / 1000
    rows: dict[int, dict[str, list[float]]] = {c: {"s": [], "limit": [], "requests": []} for c in levels}
    pages = records = 0
    try:
        api.wait_ready()
        extract_window(style_client(style, api.url, args.per_page), since, until, tmp / "warm", 100_000)
        for i in range(args.limit_repeat):
            for c in levels:
                extra = [f"api.concurrency={c}", *args.params]
                client = style_client(style, api.url, args.per_page, extra)
                t0 = time.perf_counter()
                res = extract_window(client, since, until, tmp / f"raw-{c}-{i}", 100_000)
                rows[c]["s"].append(time.perf_counter() - t0)
                pages, records = client.stats.pages, res.records
                rows[c]["limit"].append(pages * latency / c)
                rows[c]["requests"].append(client.stats.attempts)
    finally:
        api.stop()
    print(f"{style}: {records:,} records in {pages:,} pages, {args.latency_ms:g} ms per answer")
    print(f"{'concurrency':>11} {'extract s':>10} {'limit s':>8} {'x limit':>8} {'vs 1':>6} {'requests':>9}")
    base = median(rows[levels[0]]["s"])
    out = []
    for c in levels:
        s, limit = median(rows[c]["s"]), median(rows[c]["limit"])
        assert s and limit and base
        reqs = median(rows[c]["requests"])
        print(f"{c:>11} {s:>10.2f} {limit:>8.2f} {s / limit:>8.2f} {base / s:>6.1f} {reqs:>9,.0f}")
        out.append(
            {"concurrency": c, "extract_s": s, "limit_s": limit, "ratio": s / limit, "speedup": base / s}
        )
    print(f"(medians of {args.limit_repeat}; 'vs 1' is the speed-up over concurrency {levels[0]})")
    result = {"latency_ms": args.latency_ms, "pages": pages, "records": records, "levels": out}
    (BENCH_DIR / "latency.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


# -- PostgreSQL ------------------------------------------------------------------------------------------


def pg_connect(url: str):
    import psycopg2

    return psycopg2.connect(url, connect_timeout=10, application_name="eventpipe-bench")


def create_database() -> tuple[str, str]:
    name = f"eventpipe_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn = pg_connect(PG_ADMIN)
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return name, f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"


def drop_database(name: str) -> None:
    conn = pg_connect(PG_ADMIN)
    conn.autocommit = True
    conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def truncate_pipeline_tables(db_url: str) -> None:
    """Empty tables for the next run (each run then inserts every row, as the first load of a window does)."""
    conn = pg_connect(db_url)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('analytics') IS NOT NULL")
        if cur.fetchone()[0]:
            cur.execute(f"TRUNCATE {', '.join(PIPELINE_TABLES)}")
    conn.close()


def export_clean_csv(db_url: str, path: Path) -> int:
    """The loaded rows as CSV, as the limit's input (written once, before any timing)."""
    cols = ", ".join(f'"{c}"' for c in COPY_COLUMNS)
    conn = pg_connect(db_url)
    with conn, conn.cursor() as cur, open(path, "wb") as f:
        cur.copy_expert(f"COPY (SELECT {cols} FROM analytics) TO STDOUT WITH (FORMAT csv)", f)
        cur.execute("SELECT count(*) FROM analytics")
        n = cur.fetchone()[0]
        cur.execute("DROP TABLE IF EXISTS bench_copy")
        # same columns, types, NOT NULLs, primary key (user_id, timestamp, event_type) and event_date index
        cur.execute("CREATE TABLE bench_copy (LIKE analytics INCLUDING ALL)")
    conn.close()
    return n


def raw_copy(db_url: str, path: Path) -> float:
    """Seconds for ``COPY bench_copy FROM STDIN`` of the CSV into the empty indexed copy, commit included."""
    cols = ", ".join(f'"{c}"' for c in COPY_COLUMNS)
    conn = pg_connect(db_url)
    with conn.cursor() as cur:
        cur.execute("TRUNCATE bench_copy")
        conn.commit()
        with open(path, "rb") as f:
            t0 = time.perf_counter()
            cur.copy_expert(f"COPY bench_copy ({cols}) FROM STDIN WITH (FORMAT csv)", f)
            conn.commit()
            elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def drop_copy_table(db_url: str) -> None:
    conn = pg_connect(db_url)
    with conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_copy")
    conn.close()


# -- the pipeline through papermill ---------------------------------------------------------------------


@dataclass
class PipelineRun:
    wall_s: float
    peak_rss_mb: float | None
    stage_peak_rss_mb: dict[str, float | None]
    metrics: dict[str, Any]
    cpu: CpuUse = field(default_factory=CpuUse)
    stage_cpu_s: dict[str, float | None] = field(default_factory=dict)
    peak_pss_mb: float | None = None


def params_file() -> str:
    default = CODE / "params" / "default.yaml"  # what the CLI picks when --params is not given
    return str(default) if default.is_file() else ""


EXTRA_PARAMS: list[str] = []  # bench/run.py -p KEY=VALUE: passed to both the papermill and the direct runs


def overrides(per_page: int, tmp: Path) -> list[str]:
    return [
        f"api.per_page={per_page}",
        f"paths.reports_dir={tmp / 'reports'}",
        f"paths.runs_dir={tmp / 'runs'}",
        "quality.min_pass_rate=0.9",
        *EXTRA_PARAMS,
    ]


def snapshot_code(dest: Path) -> Path:
    """Copy the pipeline's code, so that edits made to lib/ while the benchmark runs do not mix into it."""
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", ".ipynb_checkpoints", "*.pyc")
    dest.mkdir(parents=True)
    for name in SNAPSHOT_PARTS:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=skip)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    return dest


def code_env() -> dict[str, str]:
    """The environment for every pipeline process: the measured code's lib/ first on the import path
    (before the editable install's /work/main/lib), so kernels import the snapshot too."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(CODE / "lib"), *filter(None, [env.get("PYTHONPATH")])])
    return env


def code_sha1(root: Path) -> str:
    digest = hashlib.sha1()
    for f in sorted(
        [
            *(root / "lib" / "eventpipe").rglob("*.py"),
            *(root / "notebooks").glob("*.ipynb"),
            *(root / "params").glob("*.yaml"),
        ]
    ):
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:12]


def pipeline_env(api_url: str, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in code_env().items() if k != "EVENTPIPE_KEEP_RUNS"}
    env.update(API_BASE_URL=api_url, API_KEY=API_KEY, DATABASE_URL=db_url, PYTHONUNBUFFERED="1")
    return env


def run_papermill(
    since: datetime,
    until: datetime,
    hours: int,
    per_page: int,
    env: dict[str, str],
    tmp: Path,
    timeout: float,
    rerun: bool = False,
) -> PipelineRun:
    tmp.mkdir(parents=True, exist_ok=True)
    cmd = [
        PY,
        str(CODE / "run_pipeline.py"),
        "backfill",
        "--start",
        iso(since),
        "--end",
        iso(until),
        "--chunk",
        f"{hours}h",
        *(["--rerun"] if rerun else []),
    ]
    for o in overrides(per_page, tmp):
        cmd += ["-p", o]
    log = tmp / "papermill.log"
    rc, wall, sampler, cpu, marks = run_sampled(cmd, env, log, timeout)
    found = sorted((tmp / "reports").glob("*/metrics.json"))
    if rc != 0 or len(found) != 1:
        raise SystemExit(f"the papermill run failed (exit {rc}, {len(found)} metrics.json):\n{tail(log)}")
    metrics = json.loads(found[0].read_text())
    if metrics.get("status") != "succeeded":
        raise SystemExit(f"the papermill run did not succeed: {metrics.get('error')}\n{tail(log)}")
    # each stage: from its "executing" line to its "done" line (kernel start included; with a shared
    # kernel, the first stage carries the kernel's start)
    starts = {st: t for t, st, what in marks if what == "executing"}
    ends = {st: t for t, st, what in marks if what == "done"}
    peaks: dict[str, float | None] = {}
    cpus: dict[str, float | None] = {}
    for st in STAGES:
        if st in starts and st in ends:
            peaks[st] = sampler.peak_mb(starts[st], ends[st])
            cpus[st] = sampler.cpu_between(starts[st], ends[st])
        else:
            peaks[st] = cpus[st] = None
    if not all(st in starts and st in ends for st in STAGES):
        print(
            "warning: the runner's 'stage X: executing/done' lines were not all seen: per-stage RSS and CPU "
            "are missing",
            file=sys.stderr,
        )
    return PipelineRun(wall, sampler.peak_mb(), peaks, metrics, cpu, cpus, sampler.peak_mb(pss=True))


# -- the same stages, directly in one process -----------------------------------------------------------


def run_direct(
    since: datetime,
    until: datetime,
    per_page: int,
    env: dict[str, str],
    tmp: Path,
    timeout: float,
    only: str | None = None,
    profile_out: Path | None = None,
) -> PipelineRun:
    """A fresh Python process that runs ``extract``, ``transform_quality``, ``load`` as plain calls."""
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / ("direct.json" if not only else f"direct-{only}.json")
    cmd = [
        PY,
        str(Path(__file__).resolve()),
        "_direct",
        "--code-root",
        str(CODE),
        "--since",
        iso(since),
        "--until",
        iso(until),
        "--run-dir",
        str(tmp / "run"),
        "--params-file",
        params_file(),
        "--out",
        str(out),
    ]
    for o in overrides(per_page, tmp):
        cmd += ["-p", o]
    if only:
        cmd += ["--only", only]
    if profile_out:
        cmd += ["--profile-out", str(profile_out)]
    log = tmp / ("direct.log" if not only else f"direct-{only}.log")
    rc, wall, sampler, cpu, _ = run_sampled(cmd, env, log, timeout)
    if rc != 0 or not out.is_file():
        raise SystemExit(f"the direct run failed (exit {rc}):\n{tail(log)}")
    result = json.loads(out.read_text())
    stage_peaks = {s: sampler.peak_mb(result["marks"][s][0], result["marks"][s][1]) for s in result["marks"]}
    return PipelineRun(
        wall, sampler.peak_mb(), stage_peaks, result, cpu, result["cpu_s"], sampler.peak_mb(pss=True)
    )


def direct_child(argv: list[str]) -> int:
    """``bench/run.py _direct ...``: the body of the direct run (in its own process)."""
    p = argparse.ArgumentParser(prog="bench/run.py _direct")
    p.add_argument("--code-root", default=str(ROOT))
    p.add_argument("--since", required=True)
    p.add_argument("--until", required=True)
    p.add_argument("--run-dir", required=True)
    p.add_argument("--params-file", default="")
    p.add_argument("-p", dest="overrides", action="append", default=[])
    p.add_argument("--out", required=True)
    p.add_argument("--only", choices=STAGES)
    p.add_argument("--profile-out")
    a = p.parse_args(argv)
    sys.path.insert(0, str(Path(a.code_root) / "lib"))
    from eventpipe.notebook import stages

    if not Path(stages.__file__).resolve().is_relative_to(Path(a.code_root).resolve()):
        raise SystemExit(f"imported {stages.__file__}, not the code under {a.code_root}")

    stages.setup_logging()
    ctx = stages.StageContext.from_parameters(
        a.since, a.until, "bench-direct", a.run_dir, a.params_file, a.overrides, "backfill"
    )
    calls = {
        "extract": lambda: stages.extract(ctx),
        "transform_quality": lambda: stages.transform_quality(ctx).metrics,
        "load": lambda: stages.load(ctx),
    }
    marks: dict[str, tuple[float, float]] = {}
    seconds: dict[str, float] = {}
    cpu_s: dict[str, float] = {}
    metrics: dict[str, Any] = {}
    for name in STAGES:
        if a.only and name != a.only:
            continue
        prof = cProfile.Profile() if a.profile_out else None
        start, t0, c0 = time.time(), time.perf_counter(), time.process_time()
        if prof:
            prof.enable()
        metrics[name] = calls[name]()
        if prof:
            prof.disable()
            prof.dump_stats(a.profile_out)
        seconds[name] = time.perf_counter() - t0
        cpu_s[name] = time.process_time() - c0
        marks[name] = (start, time.time())
    Path(a.out).write_text(
        json.dumps({"marks": marks, "seconds": seconds, "cpu_s": cpu_s, "stages": metrics}, default=str)
    )
    return 0


# -- a table that already holds many rows (--existing-rows) -------------------------------------------------

EXISTING_START = datetime(2021, 1, 1, tzinfo=timezone.utc)  # the pre-filled rows: one a second from here


def existing_database(n: int, env: dict[str, str], tmp: Path, say: Callable[[str], None]) -> str:
    """A database whose ``analytics`` holds ``n`` rows outside the bench window: built once (a marker table
    records ``n`` and the schema's migration), kept between benchmark runs and reused."""
    name = f"eventpipe_bench_existing_{n}"
    url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    revision = schema_child(env | {"DATABASE_URL": url}, tmp, probe=True) if database_exists(name) else None
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
    conn = pg_connect(PG_ADMIN)
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    conn.close()
    revision = schema_child(env | {"DATABASE_URL": url}, tmp, probe=False)
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


def database_exists(name: str) -> bool:
    conn = pg_connect(PG_ADMIN)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        found = cur.fetchone() is not None
    conn.close()
    return found


def schema_child(env: dict[str, str], tmp: Path, probe: bool) -> str | None:
    """The pipeline's tables created (``probe``: only read) in ``DATABASE_URL``; returns the migration."""
    out = tmp / "schema.json"
    cmd = [PY, str(Path(__file__).resolve()), "_summary", "--code-root", str(CODE), "--out", str(out)]
    cmd += ["--params-file", params_file(), "--schema", "probe" if probe else "create"]
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


def copy_rolled_back(db_url: str, path: Path) -> float:
    """Seconds for ``COPY analytics FROM STDIN`` of the CSV into the filled table, then rolled back (the
    table keeps its rows for the next run; the commit, ~ms, is not counted)."""
    cols = ", ".join(f'"{c}"' for c in COPY_COLUMNS)
    conn = pg_connect(db_url)
    with conn.cursor() as cur, open(path, "rb") as f:
        t0 = time.perf_counter()
        cur.copy_expert(f"COPY analytics ({cols}) FROM STDIN WITH (FORMAT csv)", f)
        elapsed = time.perf_counter() - t0
    conn.rollback()
    conn.close()
    return elapsed


def summary_timings(env: dict[str, str], db_url: str, since: datetime, until: datetime, tmp: Path) -> dict:
    """Seconds of ``Store.status()`` and of the load notebook's ``window_summary`` (medians of 3), in a child
    process of the measured code; and the wall time of ``run_pipeline.py status`` (Python's start included)."""
    out = tmp / "summary.json"
    cmd = [PY, str(Path(__file__).resolve()), "_summary", "--code-root", str(CODE), "--out", str(out)]
    cmd += ["--params-file", params_file(), "--since", iso(since), "--until", iso(until)]
    subprocess.run(cmd, env=env | {"DATABASE_URL": db_url}, check=True, capture_output=True, timeout=600)
    timings = json.loads(out.read_text())
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(
            [PY, str(CODE / "run_pipeline.py"), "status"],
            env=env | {"DATABASE_URL": db_url},
            check=True,
            capture_output=True,
            timeout=600,
        )
        walls.append(time.perf_counter() - t0)
    timings["status_cli_wall_s"] = median(walls)
    return timings


def summary_child(argv: list[str]) -> int:
    """``bench/run.py _summary ...``: create/probe the schema, or time the status and window summaries."""
    p = argparse.ArgumentParser(prog="bench/run.py _summary")
    p.add_argument("--code-root", default=str(ROOT))
    p.add_argument("--params-file", default="")
    p.add_argument("--out", required=True)
    p.add_argument("--schema", choices=("probe", "create"))
    p.add_argument("--since")
    p.add_argument("--until")
    a = p.parse_args(argv)
    sys.path.insert(0, str(Path(a.code_root) / "lib"))
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
    args: argparse.Namespace,
    env: dict[str, str],
    since: datetime,
    until: datetime,
    csv_path: Path,
    tmp: Path,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """``--existing-rows N``: per repeat, a raw COPY of the window's rows into the filled table (rolled
    back), then the pipeline's run of the window into it; and the status and load-summary timings."""
    url = existing_database(args.existing_rows, env, tmp, say)
    env = env | {"DATABASE_URL": url}
    copies, loads, walls = [], [], []
    rows = 0
    for i in range(args.repeat):
        reset_existing(url, since, until)
        s = copy_rolled_back(url, csv_path)
        copies.append(s)
        say(f"existing rows: raw COPY into {args.existing_rows:,} rows in {s:.2f}s")
        pm = run_papermill(since, until, args.hours, args.per_page, env, tmp / f"existing-{i}", args.timeout)
        load = pm.metrics["stages"]["load"]
        rows = load["loaded"]
        loads.append(load["seconds"])
        walls.append(pm.wall_s)
        say(
            f"existing rows: pipeline load {rows:,} rows in {load['seconds']:.2f}s (end to end {pm.wall_s:.1f}s)"
        )
    timings = summary_timings(env, url, since, until, tmp)
    say(
        f"existing rows: status {timings['status_s'] * 1000:.0f} ms, load summary "
        f"{timings['window_summary_s'] * 1000:.0f} ms, `status` command {timings['status_cli_wall_s']:.2f}s"
    )
    reset_existing(url, since, until)
    copy_s, load_s = median(copies), median(loads)
    return {
        "rows_before": args.existing_rows,
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


# -- peer: dlt, in the same run (--dlt) ------------------------------------------------------------------


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
    say: Any,
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


# -- machine info -----------------------------------------------------------------------------------------


def machine_info(db_url: str) -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        mem = round(psutil.virtual_memory().total / 2**30, 1)
        load = [round(x, 2) for x in psutil.getloadavg()]
    except Exception:
        mem, load = None, None
    try:
        conn = pg_connect(db_url)
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            pg = cur.fetchone()[0]
        conn.close()
    except Exception:
        pg = None

    def git(*a: str) -> str | None:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
        except Exception:
            return None

    commit = (git("rev-parse", "--short", "HEAD") or "").strip() or None
    # lib/ may carry uncommitted edits: name them, and fingerprint the code that was measured
    dirty = [
        line[3:]
        for line in (git("status", "--porcelain", "--", "lib", "notebooks", "params") or "").splitlines()
    ]
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "mem_total_gb": mem,
        "loadavg_at_start": load,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": pg,
        "git_commit": commit,
        "git_uncommitted": dirty,
        "code_sha1": code_sha1(CODE),
        "code_dir": "snapshot of the working tree" if CODE != ROOT else str(ROOT),
    }


# -- the report ---------------------------------------------------------------------------------------------


def fmt_n(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def fmt_s(v: float | None) -> str:
    return "—" if v is None else f"{v:,.2f}"


def fmt_x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def cpu_dict(c: CpuUse) -> dict[str, Any]:
    return {"tree_s": c.tree_s, "api_s": c.api_s, "machine_busy_s": c.machine_busy_s, "others_s": c.others_s}


def summarise(
    args: argparse.Namespace,
    info: dict[str, Any],
    window: dict[str, Any],
    pm_runs: list[PipelineRun],
    direct_runs: list[PipelineRun],
    limits: dict[str, list[float]],
    copy_rows: int,
    warmup_s: float,
) -> dict[str, Any]:
    first = pm_runs[0].metrics
    events = first["counts"]["extracted"]
    loaded = first["counts"]["loaded"]
    stage_records = {"extract": events, "transform_quality": events, "load": loaded}

    def pm_lib_s(stage: str) -> float | None:
        return median([r.metrics["stages"][stage]["seconds"] for r in pm_runs])

    def pm_nb_s(stage: str) -> float | None:
        return median([r.metrics["stage_seconds"][stage] for r in pm_runs])

    stages_out: dict[str, Any] = {}
    for s in STAGES:
        n = stage_records[s]
        lib_s, nb_s = pm_lib_s(s), pm_nb_s(s)
        direct_s = median([r.metrics["seconds"].get(s) for r in direct_runs]) if direct_runs else None
        stages_out[s] = {
            "records": n,
            "notebook_s": nb_s,
            "lib_s": lib_s,
            "direct_s": direct_s,
            "records_per_s": rate(n, lib_s),
            "records_per_s_notebook": rate(n, nb_s),
            "records_per_s_direct": rate(n, direct_s),
            "cpu_s": median([r.stage_cpu_s.get(s) for r in pm_runs]),
            "direct_cpu_s": median([r.stage_cpu_s.get(s) for r in direct_runs]) if direct_runs else None,
            "peak_rss_mb": median([r.stage_peak_rss_mb.get(s) for r in pm_runs]),
            "direct_peak_rss_mb": median([r.stage_peak_rss_mb.get(s) for r in direct_runs])
            if direct_runs
            else None,
            # inside the kernel against outside: the stage's own seconds, and its notebook's, ÷ direct
            "kernel_vs_direct": (lib_s / direct_s) if lib_s and direct_s else None,
            "notebook_vs_direct": (nb_s / direct_s) if nb_s and direct_s else None,
        }
    e2e_s = median([r.wall_s for r in pm_runs])
    direct_s = median([r.wall_s for r in direct_runs]) if direct_runs else None
    req_json = median([n / s for n, s in zip(limits["requests_json_n"], limits["requests_json_s"])])
    req_orjson = median([n / s for n, s in zip(limits["requests_orjson_n"], limits["requests_orjson_s"])])
    copy_rps = median([copy_rows / s for s in limits["copy_s"]])
    e2e_rps = rate(events, e2e_s)
    # the machine's limit for the whole run: the bare fetch of the same pages plus the raw COPY of its rows
    limit_sum_s = median(limits["requests_json_s"]) + median(limits["copy_s"])
    out = {
        "events": events,
        "events_requested": args.events,
        "end_to_end_s": e2e_s,
        "end_to_end_records_per_s": e2e_rps,
        "extract_records_per_s": stages_out["extract"]["records_per_s"],
        "extract_limit_records_per_s": req_json,
        "transform_records_per_s": stages_out["transform_quality"]["records_per_s"],
        "load_records_per_s": stages_out["load"]["records_per_s"],
        "load_limit_records_per_s": copy_rps,
        "peak_rss_mb": median([r.peak_rss_mb for r in pm_runs]),
        "peak_pss_mb": median([r.peak_pss_mb for r in pm_runs]),
        "end_to_end_cpu_s": median([r.cpu.tree_s for r in pm_runs]),
        "direct_cpu_s": median([r.cpu.tree_s for r in direct_runs]) if direct_runs else None,
        "notebook_overhead_cpu_s": (
            median([r.cpu.tree_s for r in pm_runs]) - median([r.cpu.tree_s for r in direct_runs])
        )
        if direct_runs
        else None,
        "notebook_overhead_s": (e2e_s - direct_s) if direct_s is not None else None,
        "notebook_overhead_runs_s": [p.wall_s - d.wall_s for p, d in zip(pm_runs, direct_runs)],
        "limit_sum_s": limit_sum_s,
        "direct_end_to_end_s": direct_s,
        "direct_records_per_s": rate(events, direct_s),
        "direct_peak_rss_mb": median([r.peak_rss_mb for r in direct_runs]) if direct_runs else None,
        "direct_peak_pss_mb": median([r.peak_pss_mb for r in direct_runs]) if direct_runs else None,
        "extract_limit_orjson_records_per_s": req_orjson,
        "dlt_reference_records_per_s": DLT_RECORDS_PER_S,
        "ratios": {
            "extract_vs_bare_requests": rate(stages_out["extract"]["records_per_s"], req_json),
            "extract_vs_bare_requests_orjson": rate(stages_out["extract"]["records_per_s"], req_orjson),
            "load_vs_raw_copy": rate(stages_out["load"]["records_per_s"], copy_rps),
            "end_to_end_vs_dlt": rate(e2e_rps, DLT_RECORDS_PER_S),
            "end_to_end_vs_limit_sum": (e2e_s / limit_sum_s) if e2e_s and limit_sum_s else None,
        },
        "stages": stages_out,
        "counts": first["counts"],
        "loaded": loaded,
        "copy_rows": copy_rows,
        "window": window,
        "per_page": args.per_page,
        "extra_params": list(args.params),
        "repeat": args.repeat,
        "limit_repeat": args.limit_repeat,
        "api_warmup_s": warmup_s,
        "machine": info,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": {
            "papermill": [
                {
                    "wall_s": r.wall_s,
                    "cpu": cpu_dict(r.cpu),
                    "stage_cpu_s": r.stage_cpu_s,
                    "peak_rss_mb": r.peak_rss_mb,
                    "peak_pss_mb": r.peak_pss_mb,
                    "stage_peak_rss_mb": r.stage_peak_rss_mb,
                    "stage_seconds": r.metrics["stage_seconds"],
                    "lib_seconds": {s: r.metrics["stages"][s]["seconds"] for s in STAGES},
                    "run_id": r.metrics["run_id"],
                }
                for r in pm_runs
            ],
            "direct": [
                {
                    "wall_s": r.wall_s,
                    "cpu": cpu_dict(r.cpu),
                    "stage_cpu_s": r.stage_cpu_s,
                    "peak_rss_mb": r.peak_rss_mb,
                    "peak_pss_mb": r.peak_pss_mb,
                    "stage_peak_rss_mb": r.stage_peak_rss_mb,
                    "stage_seconds": r.metrics["seconds"],
                }
                for r in direct_runs
            ],
            "limits": limits,
        },
    }
    return out


def print_table(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=None if sys.stdout.isatty() else 180, highlight=False)
    st = res["stages"]
    r = res["ratios"]
    w = res["window"]
    m = res["machine"]
    reps = f"median of {res['repeat']}" if res["repeat"] > 1 else "1 run"
    table = Table(
        title=f"eventpipe benchmark: {res['events']:,} events, per_page {res['per_page']}, {reps} "
        f"(limits: median of {res['limit_repeat']}); {m['nproc']} cores, {m['cpu_model']}",
        title_justify="left",
    )
    for col, just in (
        ("", "left"),
        ("records", "right"),
        ("wall s", "right"),
        ("cpu s", "right"),
        ("work s", "right"),
        ("records/s", "right"),
        ("peak RSS MB", "right"),
        ("direct s", "right"),
        ("direct RSS MB", "right"),
        ("limit, same run", "left"),
        ("limit records/s", "right"),
        ("ratio", "right"),
    ):
        table.add_column(col, justify=just)
    limits = {
        "extract": (
            "bare requests .json()",
            res["extract_limit_records_per_s"],
            r["extract_vs_bare_requests"],
        ),
        "transform_quality": ("—", None, None),
        "load": ("raw COPY (indexed)", res["load_limit_records_per_s"], r["load_vs_raw_copy"]),
    }
    for s in STAGES:
        x = st[s]
        name, lim, ratio = limits[s]
        table.add_row(
            s,
            fmt_n(x["records"]),
            fmt_s(x["notebook_s"]),
            fmt_s(x["cpu_s"]),
            fmt_s(x["lib_s"]),
            fmt_n(x["records_per_s"]),
            fmt_n(x["peak_rss_mb"]),
            fmt_s(x["direct_s"]),
            fmt_n(x["direct_peak_rss_mb"]),
            name,
            fmt_n(lim),
            fmt_x(ratio),
        )
    table.add_section()
    table.add_row(
        "end to end, papermill",
        fmt_n(res["events"]),
        fmt_s(res["end_to_end_s"]),
        fmt_s(res["end_to_end_cpu_s"]),
        "",
        fmt_n(res["end_to_end_records_per_s"]),
        fmt_n(res["peak_rss_mb"]),
        fmt_s(res["direct_end_to_end_s"]),
        fmt_n(res["direct_peak_rss_mb"]),
        "dlt (PERF-NOTES, not run)",
        fmt_n(res["dlt_reference_records_per_s"]),
        fmt_x(r["end_to_end_vs_dlt"]),
    )
    table.add_row(
        "end to end, direct",
        fmt_n(res["events"]),
        fmt_s(res["direct_end_to_end_s"]),
        fmt_s(res["direct_cpu_s"]),
        "",
        fmt_n(res["direct_records_per_s"]),
        fmt_n(res["direct_peak_rss_mb"]),
        "",
        "",
        "",
        "",
        "",
    )
    table.add_row(
        "notebook overhead",
        "",
        fmt_s(res["notebook_overhead_s"]),
        fmt_s(res["notebook_overhead_cpu_s"]),
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    )
    if "dlt" in res:
        d = res["dlt"]
        runs = res["runs"]["dlt"]
        table.add_row(
            "dlt 1.31 (same run)",
            fmt_n(median([x["events"] for x in runs])),
            fmt_s(d["seconds"]),
            "",
            "",
            fmt_n(res["dlt_records_per_s"]),
            "",
            "",
            "",
            "failed: see the log" if d["error"] else "end to end, papermill ÷ this",
            "",
            fmt_x(r.get("end_to_end_vs_dlt_same_run")),
        )
    table.add_section()
    lim = res["runs"]["limits"]
    table.add_row(
        "limit: requests .json()",
        fmt_n(median(lim["requests_json_n"])),
        fmt_s(median(lim["requests_json_s"])),
        "",
        "",
        fmt_n(res["extract_limit_records_per_s"]),
        "",
        "",
        "",
        "",
        "",
        "",
    )
    table.add_row(
        "limit: requests orjson",
        fmt_n(median(lim["requests_orjson_n"])),
        fmt_s(median(lim["requests_orjson_s"])),
        "",
        "",
        fmt_n(res["extract_limit_orjson_records_per_s"]),
        "",
        "",
        "",
        "",
        "",
        "",
    )
    table.add_row(
        "limit: raw COPY",
        fmt_n(res["copy_rows"]),
        fmt_s(median(lim["copy_s"])),
        "",
        "",
        fmt_n(res["load_limit_records_per_s"]),
        "",
        "",
        "",
        "",
        "",
        "",
    )
    con.print(table)
    slowest = max(STAGES, key=lambda s: st[s]["lib_s"] or 0)
    con.print(
        f"window [{w['since']}, {w['until']}) = {w['hours']} h × {w['events_per_hour']:,} events/h "
        f"(+ duplicates); demo API in its own process, warm-up {res['api_warmup_s']:.1f}s (not counted)"
    )
    con.print(
        "wall s: notebook (stage) or process (end to end) seconds; work s: the stage's own 'seconds' in "
        "metrics.json; records/s = records ÷ work s (end to end: events ÷ wall s); peak RSS: whole process "
        "tree (runner + kernel); direct: the same stage functions in one process, no notebooks"
    )
    pm_other = median([x["cpu"]["others_s"] for x in res["runs"]["papermill"]])
    d_other = median([x["cpu"]["others_s"] for x in res["runs"]["direct"]])
    con.print(
        f"cpu s: CPU seconds of the whole process tree (runner + kernel) during the stage or the run; "
        f"busy CPU of everything else on the machine (PostgreSQL included) during the runs: "
        f"papermill {fmt_s(pm_other)} s, direct {fmt_s(d_other)} s — on {m['nproc']} cores, a high figure "
        f"means the timings were contended"
    )
    if "dlt" in res and res["runs"]["dlt"]:
        x = res["runs"]["dlt"][0]
        con.print(
            f"dlt {x['dlt_version']} (rest_api, page-number paginator, per_page {res['dlt']['per_page']:,}, merge on "
            f"(user_id, timestamp, event)): wall s = pipeline.run only (extract, normalize, load; no interpreter "
            f"start or imports); {x['dropped']:,} items dropped by its key filter, {x['loaded']:,} rows in its "
            f"table (ours: {res['loaded']:,})"
        )
    if res.get("peak_pss_mb"):
        direct = res.get("direct_peak_pss_mb")
        con.print(
            f"peak PSS (shared pages split between the processes that map them): papermill "
            f"{fmt_n(res['peak_pss_mb'])} MB" + (f", direct {fmt_n(direct)} MB" if direct else "")
        )
    con.print(
        f"slowest stage: {slowest} ({fmt_s(st[slowest]['lib_s'])} s of work, "
        f"{fmt_s(st[slowest]['notebook_s'])} s as a notebook)"
    )
    if res.get("existing_rows"):
        e = res["existing_rows"]
        con.print(
            f"into a table of {e['rows_before']:,} other rows: load {fmt_s(e['load_s'])} s = "
            f"{fmt_n(e['load_records_per_s'])}/s, raw COPY {fmt_s(e['copy_s'])} s = "
            f"{fmt_n(e['copy_records_per_s'])}/s, ratio {fmt_x(e['load_vs_copy'])}; status "
            f"{e['status_s'] * 1000:.0f} ms, load summary {e['window_summary_s'] * 1000:.0f} ms, "
            f"`status` command {e['status_cli_wall_s']:.2f} s (Python's start included)"
        )


def read_profile(path: Path, stage: str, seconds: float, top: int = 10) -> tuple[str, list[dict[str, Any]]]:
    """The top functions by cumulative time, as printable text and as rows for the JSON."""
    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.sort_stats("cumulative").print_stats(top)
    text = buf.getvalue()
    start = text.find("   ncalls")
    text = (
        f"cProfile of {stage}, run directly in-process ({seconds:.2f}s under the profiler), "
        f"top {top} by cumulative time:\n" + (text[start:] if start >= 0 else text).rstrip()
    )
    rows = []
    for (file, line, fn), (_cc, nc, tt, ct, _) in sorted(stats.stats.items(), key=lambda kv: -kv[1][3])[:top]:
        rows.append(
            {
                "function": f"{Path(file).name}:{line}({fn})",
                "ncalls": nc,
                "tottime_s": round(tt, 3),
                "cumtime_s": round(ct, 3),
            }
        )
    return text, rows


# -- main -------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="bench/run.py")
    p.add_argument(
        "--events", type=int, default=1_000_000, help="events in the window (about; default 1,000,000)"
    )
    p.add_argument("--per-page", type=int, default=1000, help="items per API page (default 1000)")
    p.add_argument(
        "--repeat", type=int, default=1, help="pipeline runs (papermill and direct) to take medians of"
    )
    p.add_argument(
        "--limit-repeat", type=int, default=3, help="runs of each raw limit to take medians of (default 3)"
    )
    p.add_argument("--hours", type=int, default=24, help="window length in hours (default 24; at most 200)")
    p.add_argument(
        "--skip-direct", action="store_true", help="no direct (in-process) run: no notebook overhead"
    )
    p.add_argument(
        "--profile", action="store_true", help="afterwards, cProfile the slowest stage run directly"
    )
    p.add_argument(
        "--timeout", type=float, default=3600, help="seconds one pipeline run may take (default 3600)"
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the temp folder and the database (for inspection)"
    )
    p.add_argument(
        "-p",
        dest="params",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra pipeline parameter for both the papermill and the direct runs, e.g. "
        "-p runner.shared_kernel=false (repeatable)",
    )
    p.add_argument(
        "--in-place",
        action="store_true",
        help="run the code where it is instead of a snapshot taken at the start (edits made to lib/ "
        "during the benchmark then mix into it)",
    )
    p.add_argument(
        "--dlt",
        action="store_true",
        help="afterwards, run dlt 1.31 (bench/dlt_peer.py, in bench/.dlt-venv) over the same API and window "
        "into a database of its own, as a peer measured in the same run",
    )
    p.add_argument("--dlt-repeat", type=int, default=1, help="dlt runs to take the median of (default 1)")
    p.add_argument(
        "--dlt-per-page", type=int, default=5000, help="items per page for dlt (default 5000, as quoted)"
    )
    p.add_argument(
        "--existing-rows",
        type=int,
        default=0,
        metavar="N",
        help="afterwards, load the window into a table that already holds N other rows (a database "
        "eventpipe_bench_existing_N, built once and kept), beside a raw COPY into it; and time status",
    )
    p.add_argument("--out", default=str(BENCH_DIR / "results.json"), help="where to write the results JSON")
    p.add_argument(
        "--style",
        choices=tuple(STYLE_SECRETS),
        help="only the source: extract with params/sources/STYLE.yaml against a bare loop over the same pages",
    )
    p.add_argument(
        "--latency-ms",
        type=float,
        help="only the extract, from a demo API that waits this long before every answer, at each --concurrency",
    )
    p.add_argument("--concurrency", default="1,4,8", help="with --latency-ms: api.concurrency levels (1,4,8)")
    args = p.parse_args(argv)
    if (
        args.events < 1
        or args.per_page < 1
        or args.repeat < 1
        or args.limit_repeat < 1
        or args.dlt_repeat < 1
    ):
        p.error("--events, --per-page, --repeat, --limit-repeat and --dlt-repeat must be at least 1")
    if not 1 <= args.hours <= 200:  # the demo API caches 256 generated hours; more would regenerate per page
        p.error("--hours must be between 1 and 200")

    since = WINDOW_START
    until = since + timedelta(hours=args.hours)
    per_hour = max(1, round(args.events / args.hours / (1 + DEMO_DUP * (1 - DEMO_DIRTY))))
    window = {"since": iso(since), "until": iso(until), "hours": args.hours, "events_per_hour": per_hour}
    tmp = Path(tempfile.mkdtemp(prefix="eventpipe-bench-"))
    say = lambda msg: print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    global CODE, API_PID
    if args.latency_ms is not None:
        return latency_bench(args, since, until, per_hour, tmp)
    if args.style:
        return style_bench(args, since, until, per_hour, tmp)
    EXTRA_PARAMS.extend(args.params)
    if not args.in_place:
        CODE = snapshot_code(tmp / "code")
    if args.dlt:
        say("dlt peer: checking bench/.dlt-venv (created with dlt[postgres]==1.31.0 if missing)")
        dlt_py = dlt_python()

    db_name, db_url = create_database()
    say(f"database {db_name}; temp folder {tmp}")
    api = DemoApi(per_hour, tmp / "demo-api.log")
    API_PID = api.proc.pid
    try:
        info = machine_info(db_url)
        api.wait_ready()
        say(
            f"demo API at {api.url}: {per_hour:,} events/h over [{window['since']}, {window['until']}); warming up"
        )
        warmup_s = api.warm_up(since, until)
        say(f"warm-up {warmup_s:.1f}s")
        env = pipeline_env(api.url, db_url)

        limits: dict[str, list[float]] = {
            k: []
            for k in (
                "requests_json_n",
                "requests_json_s",
                "requests_orjson_n",
                "requests_orjson_s",
                "copy_s",
            )
        }
        for _ in range(args.limit_repeat):
            for parser in ("json", "orjson"):
                n, s = bare_requests(api.url, since, until, args.per_page, parser)
                limits[f"requests_{parser}_n"].append(n)
                limits[f"requests_{parser}_s"].append(s)
                say(f"limit: bare requests ({parser}) {n:,} items in {s:.2f}s = {n / s:,.0f}/s")

        pm_runs: list[PipelineRun] = []
        direct_runs: list[PipelineRun] = []
        copy_rows = 0
        reload_stats: dict[str, Any] = {}
        csv_path = tmp / "clean.csv"
        for i in range(args.repeat):
            truncate_pipeline_tables(db_url)
            say(f"run {i + 1}/{args.repeat}: papermill backfill")
            pm = run_papermill(
                since, until, args.hours, args.per_page, env, tmp / f"papermill-{i}", args.timeout
            )
            pm_runs.append(pm)
            say(
                f"  papermill: {pm.wall_s:.2f}s, peak RSS {pm.peak_rss_mb:,.0f} MB, stages {pm.metrics['stage_seconds']}"
            )
            if i == 0:
                copy_rows = export_clean_csv(db_url, csv_path)
                for _ in range(args.limit_repeat):
                    s = raw_copy(db_url, csv_path)
                    limits["copy_s"].append(s)
                    say(f"limit: raw COPY {copy_rows:,} rows in {s:.2f}s = {copy_rows / s:,.0f}/s")
                drop_copy_table(db_url)
                # the same window again: every row conflicts, so the load takes the staging + upsert path
                say("reload: the same window again (every row already stored: staging + upsert path)")
                again = run_papermill(
                    since,
                    until,
                    args.hours,
                    args.per_page,
                    env,
                    tmp / "papermill-reload",
                    args.timeout,
                    rerun=True,
                )
                reload_load = again.metrics["stages"]["load"]
                reload_stats = {
                    "load_s": reload_load["seconds"],
                    "rows": reload_load["loaded"],
                    "unchanged": reload_load["unchanged"],
                    "end_to_end_s": again.wall_s,
                }
                say(
                    f"  reload: load {reload_load['loaded']:,} rows in {reload_load['seconds']:.2f}s "
                    f"= {reload_load['loaded'] / reload_load['seconds']:,.0f}/s ({reload_load['unchanged']:,} unchanged)"
                )
            if not args.skip_direct:
                truncate_pipeline_tables(db_url)
                say(f"run {i + 1}/{args.repeat}: direct (same stage functions, one process)")
                d = run_direct(since, until, args.per_page, env, tmp / f"direct-{i}", args.timeout)
                direct_runs.append(d)
                say(
                    f"  direct: {d.wall_s:.2f}s, peak RSS {d.peak_rss_mb:,.0f} MB, "
                    f"stages { {k: round(v, 2) for k, v in d.metrics['seconds'].items()} }"
                )
                pc, dc = pm.metrics["counts"], d.metrics["stages"]["load"]
                if (pc["extracted"], pc["loaded"]) != (dc["extracted"], dc["loaded"]):
                    say(
                        f"warning: counts differ: papermill {pc['extracted']}/{pc['loaded']}, "
                        f"direct {dc['extracted']}/{dc['loaded']}"
                    )

        res = summarise(args, info, window, pm_runs, direct_runs, limits, copy_rows, warmup_s)
        res["reload"] = reload_stats
        res["load_reload_records_per_s"] = reload_stats["rows"] / reload_stats["load_s"]
        now_sha1 = code_sha1(ROOT)
        if now_sha1 != info["code_sha1"]:
            res["machine"]["code_changed_during_run"] = True
            say(
                f"note: lib/, notebooks/ or params/ changed during the benchmark (now {now_sha1}); "
                f"{'the snapshot taken at the start was measured' if CODE != ROOT else 'figures may mix versions'}"
            )
        profile_text = ""

        if args.profile:
            slowest = max(STAGES, key=lambda s: res["stages"][s]["lib_s"] or 0)
            ptmp = tmp / ("direct-0" if direct_runs else "profile")
            if slowest != "extract" and not direct_runs:
                say("--profile needs the direct run's files for this stage: running it first")
                truncate_pipeline_tables(db_url)
                run_direct(since, until, args.per_page, env, ptmp, args.timeout)
            if slowest == "load":
                truncate_pipeline_tables(db_url)
            say(f"profiling {slowest} (directly, under cProfile)")
            prof_path = tmp / f"profile-{slowest}.pstats"
            pr = run_direct(
                since, until, args.per_page, env, ptmp, args.timeout, only=slowest, profile_out=prof_path
            )
            secs = pr.metrics["seconds"][slowest]
            profile_text, rows = read_profile(prof_path, slowest, secs)
            res["profile"] = {"stage": slowest, "seconds_under_cprofile": secs, "top_cumulative": rows}

        if args.existing_rows:
            res["existing_rows"] = existing_rows_bench(args, env, since, until, csv_path, tmp, say)
            res["ratios"]["load_vs_copy_existing_rows"] = res["existing_rows"]["load_vs_copy"]

        if args.dlt:
            say(
                f"dlt peer: {args.dlt_repeat} run(s), per_page {args.dlt_per_page}, into a database of its own"
            )
            peer = run_dlt_peer(
                dlt_py,
                api.url,
                since,
                until,
                args.dlt_per_page,
                args.dlt_repeat,
                tmp,
                args.timeout,
                args.keep,
                say,
            )
            res["dlt_records_per_s"] = peer["records_per_s"]
            res["ratios"]["end_to_end_vs_dlt_same_run"] = rate(
                res["end_to_end_records_per_s"], peer["records_per_s"]
            )
            res["dlt"] = {k: v for k, v in peer.items() if k != "runs"}
            res["runs"]["dlt"] = peer["runs"]

        Path(args.out).write_text(json.dumps(res, indent=2, default=str) + "\n")
        print_table(res)
        if profile_text:
            print("\n" + profile_text)
        print(f"results: {args.out}")
        return 0
    finally:
        api.stop()
        if args.keep:
            say(f"kept: database {db_name}, folder {tmp}")
        else:
            try:
                drop_database(db_name)
            except Exception as e:  # never hide the real error behind a cleanup one
                say(f"could not drop database {db_name}: {e}")
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_direct":
        sys.exit(direct_child(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "_summary":
        sys.exit(summary_child(sys.argv[2:]))
    sys.exit(main())
