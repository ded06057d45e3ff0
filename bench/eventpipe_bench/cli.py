"""``bench/run.py``'s command line: the options, and the order of the steps of one benchmark run (the steps
themselves live in their own modules; bench/README.md says what each one measures)."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from .common import BENCH_DIR, DEMO_DIRTY, DEMO_DUP, ROOT, WINDOW_START, iso, say
from .demo_api import DemoApi
from .existing_rows import existing_rows_bench
from .extract_only import STYLE_SECRETS, latency_bench, style_bench
from .goals import judge, judge_files, read_results
from .limits import copy_limit, fetch_limits
from .machine import machine_info, note_code_change
from .peer import dlt_python, run_dlt_peer
from .pg import create_database, drop_database, truncate_pipeline_tables
from .pipeline import PipelineRun, Target, pipeline_env, run_direct, run_papermill, run_reload
from .profiling import profile_slowest
from .results import add_dlt, add_existing_rows, add_reload, summarise
from .snapshot import Code, snapshot_code
from .table import print_table

DESCRIPTION = (
    "Benchmark: the whole pipeline end to end and per stage, beside raw limits measured in the same run."
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=DESCRIPTION, prog="bench/run.py")
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
    p.add_argument(
        "--rss-against",
        metavar="RESULTS",
        help="a results JSON of the same code at 1M events: judge this run's peak RSS (5M) against its peak",
    )
    p.add_argument("--out", default=str(BENCH_DIR / "results.json"), help="where to write the results JSON")
    p.add_argument(
        "--judge",
        nargs="+",
        metavar="RESULTS",
        help="run nothing: judge the goals on the medians of these results files (runs of the same command); "
        "exit 1 when a measured goal is not met",
    )
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
    if min(args.events, args.per_page, args.repeat, args.limit_repeat, args.dlt_repeat) < 1:
        p.error("--events, --per-page, --repeat, --limit-repeat and --dlt-repeat must be at least 1")
    if not 1 <= args.hours <= 200:  # the demo API caches 256 generated hours; more would regenerate per page
        p.error("--hours must be between 1 and 200")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.judge:
        return judge_files(args.judge)
    rss_against_mb = None
    if args.rss_against:  # read now: a wrong path fails before minutes of runs, not after them
        try:
            rss_against_mb = read_results(args.rss_against)["peak_rss_mb"]
        except (ValueError, KeyError) as e:
            print(f"bench: --rss-against: {e}")
            return 2
    since = WINDOW_START
    until = since + timedelta(hours=args.hours)
    per_hour = max(1, round(args.events / args.hours / (1 + DEMO_DUP * (1 - DEMO_DIRTY))))
    tmp = Path(tempfile.mkdtemp(prefix="eventpipe-bench-"))
    if args.latency_ms is not None:
        return latency_bench(args, Code(), since, until, per_hour, tmp)
    if args.style:
        return style_bench(args, Code(), since, until, per_hour, tmp)
    code = Code(ROOT if args.in_place else snapshot_code(tmp / "code"), tuple(args.params))
    dlt_py = None
    if args.dlt:
        say("dlt peer: checking bench/.dlt-venv (created with dlt[postgres]==1.31.0 if missing)")
        dlt_py = dlt_python()

    db_name, db_url = create_database()
    say(f"database {db_name}; temp folder {tmp}")
    api = DemoApi(code, per_hour, tmp / "demo-api.log")
    try:
        info = machine_info(db_url, code)
        api.wait_ready()
        window = {"since": iso(since), "until": iso(until), "hours": args.hours, "events_per_hour": per_hour}
        say(
            f"demo API at {api.url}: {per_hour:,} events/h over [{window['since']}, {window['until']}); warming up"
        )
        warmup_s = api.warm_up(since, until)
        say(f"warm-up {warmup_s:.1f}s")
        t = Target(
            code,
            pipeline_env(code, api.url, db_url),
            since,
            until,
            args.hours,
            args.per_page,
            args.timeout,
            api.proc.pid,
        )
        limits = fetch_limits(api.url, since, until, args.per_page, args.limit_repeat)
        csv_path = tmp / "clean.csv"
        runs = pipeline_runs(args, t, db_url, csv_path, tmp)
        limits["copy_s"] = runs.copy_s
        res = summarise(args, info, window, runs.papermill, runs.direct, limits, runs.copy_rows, warmup_s)
        add_reload(res, runs.reload)
        note_code_change(res, code)
        profile_text = ""
        if args.profile:
            lib_s = {s: x["lib_s"] for s, x in res["stages"].items()}
            profile_text, res["profile"] = profile_slowest(t, db_url, lib_s, bool(runs.direct), tmp)
        if args.existing_rows:
            add_existing_rows(res, existing_rows_bench(t, args.existing_rows, args.repeat, csv_path, tmp))
        if dlt_py:
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
            )
            add_dlt(res, peer)
        if args.rss_against:
            res["rss_against"] = args.rss_against
            res["rss_against_mb"] = rss_against_mb
        res["goals"] = judge(res)

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


@dataclass
class Runs:
    """The repeated pipeline runs, and what the first one measured besides: the raw COPY of the rows it
    loaded (rows, seconds per run) and the reload of the same window."""

    papermill: list[PipelineRun] = field(default_factory=list)
    direct: list[PipelineRun] = field(default_factory=list)
    copy_rows: int = 0
    copy_s: list[float] = field(default_factory=list)
    reload: dict[str, Any] = field(default_factory=dict)


def pipeline_runs(args: argparse.Namespace, t: Target, db_url: str, csv_path: Path, tmp: Path) -> Runs:
    """``--repeat`` papermill runs, each followed by a direct run, every one on emptied tables; after the
    first, the raw COPY limit of the rows it loaded (kept in ``csv_path``) and a reload of the same window."""
    runs = Runs()
    for i in range(args.repeat):
        truncate_pipeline_tables(db_url)
        say(f"run {i + 1}/{args.repeat}: papermill backfill")
        pm = run_papermill(t, tmp / f"papermill-{i}")
        runs.papermill.append(pm)
        say(
            f"  papermill: {pm.wall_s:.2f}s, peak RSS {pm.peak_rss_mb:,.0f} MB {pm.peak_breakdown_mb}, stages {pm.metrics['stage_seconds']}"
        )
        if i == 0:
            runs.copy_rows, runs.copy_s = copy_limit(db_url, csv_path, args.limit_repeat)
            runs.reload = run_reload(t, tmp / "papermill-reload")
        if args.skip_direct:
            continue
        truncate_pipeline_tables(db_url)
        say(f"run {i + 1}/{args.repeat}: direct (same stage functions, one process)")
        d = run_direct(t, tmp / f"direct-{i}")
        runs.direct.append(d)
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
    return runs
