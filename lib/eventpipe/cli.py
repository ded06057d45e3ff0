"""Command line: ``run``, ``status``, ``backfill``, ``replay-dlq``, ``schedule``, ``demo-api``, ``params``.

A thin layer: it parses, resolves settings, then calls the runner and the
store. User mistakes print one line and exit 2; pipeline failures exit 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from contextlib import nullcontext
from typing import Any, Sequence

from .errors import PipelineError, SettingsError
from .settings import PROJECT_ROOT, iso, known_params, load_settings, mask_url, parse_duration, parse_instant

log = logging.getLogger("eventpipe.cli")
DEMO_PARAMS = str(PROJECT_ROOT / "params" / "demo.yaml")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", metavar="FILE", help="params YAML (default: params/default.yaml if present)")
    p.add_argument("-p", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one parameter, e.g. -p api.per_page=500 (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="run_pipeline.py", description="Analytics notebook pipeline (papermill stages).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="incremental run (or --full reload)")
    _common(run)
    run.add_argument("--full", action="store_true", help="re-read from quality.min_timestamp")
    run.add_argument("--demo", action="store_true", help="use the bundled demo API and params/demo.yaml")
    run.add_argument("--wait", action="store_true", help="wait for a run in progress instead of exiting")

    bf = sub.add_parser("backfill", help="one run per partition of [start, end), resumable")
    _common(bf)
    bf.add_argument("--start", required=True, help="first instant, inclusive (ISO 8601; no offset = UTC)")
    bf.add_argument("--end", required=True, help="last instant, exclusive")
    bf.add_argument("--chunk", default="1d", help="partition size: 1d, 6h, 1h ... (default 1d)")
    bf.add_argument("--workers", type=int, default=1, help="partitions run in parallel, each in its own process")
    bf.add_argument("--rerun", action="store_true", help="also re-run partitions that already succeeded")
    bf.add_argument("--demo", action="store_true", help="use the bundled demo API and params/demo.yaml")
    bf.add_argument("--wait", action="store_true", help="wait for a run in progress instead of exiting")

    st = sub.add_parser("status", help="last runs, watermark, dead letters")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.add_argument("--limit", type=int, default=10, help="how many runs (default 10)")
    _common(st)

    rp = sub.add_parser("replay-dlq", help="re-run pending dead letters through transform, quality and load")
    _common(rp)
    rp.add_argument("--dry-run", action="store_true", help="show what would pass; write nothing")
    rp.add_argument("--wait", action="store_true", help="wait for a run in progress instead of exiting")

    sc = sub.add_parser("schedule", help="run incrementally on an interval or cron, never overlapping")
    _common(sc)
    when = sc.add_mutually_exclusive_group(required=True)
    when.add_argument("--every", help="interval, e.g. 15m")
    when.add_argument("--cron", help='crontab expression, e.g. "*/15 * * * *" (UTC)')
    sc.add_argument("--demo", action="store_true", help="use the bundled demo API and params/demo.yaml")

    api = sub.add_parser("demo-api", help="serve the demo API (synthetic events, optional faults)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8765)
    api.add_argument("--seed", type=int, default=42)
    api.add_argument("--events-per-hour", type=int, default=120)
    api.add_argument("--dirty-share", type=float, default=0.02)
    api.add_argument("--duplicate-share", type=float, default=0.02)
    api.add_argument("--start", default="2024-01-01", help="first instant with events (default 2024-01-01)")
    api.add_argument("--faults", default="", help="comma list: 429,429date,500,502,503,504,slow,drop,truncate,"
                                                 "missing_items,missing_has_more")
    api.add_argument("--fault-every", type=int, default=3, help="every Nth request gets the next fault")
    api.add_argument("--retry-after", default="1", help="seconds sent in Retry-After on 429")
    api.add_argument("--slow-s", type=float, default=2.0, help="delay of a slow page")

    sub.add_parser("params", help="list every parameter with its type, default and meaning")
    return parser


def _settings(args: argparse.Namespace, require_api: bool = False):
    params = args.params or (DEMO_PARAMS if getattr(args, "demo", False) else None)
    if params is None and (PROJECT_ROOT / "params" / "default.yaml").is_file():
        params = str(PROJECT_ROOT / "params" / "default.yaml")
    return load_settings(params, args.overrides, require_api=require_api)


def _console():
    from rich.console import Console

    return Console(stderr=False, highlight=False)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if getattr(args, "verbose", False) else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    for noisy in ("asyncio", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("traitlets").setLevel(logging.ERROR)  # zmq clean-up chatter from jupyter_client
    if args.command in ("run", "backfill", "replay-dlq"):
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return COMMANDS[args.command](args)
    except PipelineError as e:
        sys.stderr.write(f"error: {e}\n" if e.exit_code else f"{e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except Exception as e:  # a database dropping mid-run and the like: one masked line, not a traceback
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(e, SQLAlchemyError):
            detail = str(getattr(e, "orig", e)).strip().splitlines()
            sys.stderr.write(f"error: database error: {mask_url(detail[0] if detail else type(e).__name__)}\n")
            return 1
        raise


def _terminate(signum: int, _frame: Any) -> None:
    from .errors import Terminated

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated(signal.Signals(signum).name)


# -- run ------------------------------------------------------------------------------------------

def _early_kernel(settings: Any) -> Any:
    """Start the notebooks' shared kernel first, so it boots and imports while this process imports the
    runner, checks the database and takes the run lock (two cores: ~1 s off every run). None: not shared."""
    if not settings.runner.shared_kernel:
        return None
    from .kernel import SharedKernel
    from .settings import NOTEBOOK_DIR

    return SharedKernel(settings.runner.kernel_name, NOTEBOOK_DIR).start()


def cmd_run(args: argparse.Namespace) -> int:
    from .demo_api import serve_demo

    settings = _settings(args, require_api=not args.demo)
    with serve_demo(settings) if args.demo else nullcontext():
        kernel = _early_kernel(settings)
        try:
            from .runner import Runner

            runner = Runner(settings, kernel=kernel)
            runner.preflight()
            with runner.store.run_lock(wait=args.wait):
                runner.store.mark_interrupted()
                plan = runner.incremental_plan(full=args.full)
                if plan is None:
                    print("nothing to do: the window is empty")
                    return 0
                outcome = runner.execute(plan)
        finally:
            if kernel:
                kernel.shutdown()
    _print_outcome(outcome)
    return 0 if outcome.status == "succeeded" else 1


def _print_outcome(outcome: Any) -> None:
    from rich.table import Table

    m = outcome.metrics
    c = m.get("counts", {})
    secs = m.get("stage_seconds", {})
    table = Table(title=f"run {outcome.run_id} ({m['kind']}): {outcome.status}")
    for col in ("stage", "records in", "records out", "rejected", "duplicates", "seconds"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    table.add_row("extract", "-", _n(c.get("extracted")), "-", "-", _s(secs.get("extract")))
    table.add_row("transform", _n(c.get("extracted")), _n(c.get("transformed")), _n(c.get("rejected_transform")),
                  _n(c.get("duplicates")), _s(secs.get("transform_quality")))
    table.add_row("quality", _n(c.get("transformed")), _n(c.get("passed")), _n(c.get("rejected_quality")), "-", "")
    table.add_row("load", _n(c.get("passed")), _n(c.get("loaded")), "-", "-", _s(secs.get("load")))
    con = _console()
    con.print(table)
    rate = m.get("pass_rate")
    con.print(f"window  [{m['window']['since']}, {m['window']['until']})")
    con.print(f"loaded  {_n(c.get('loaded'))} (inserted {_n(c.get('inserted'))}, updated {_n(c.get('updated'))}, "
              f"unchanged {_n(c.get('unchanged'))}); dead letters new {_n(c.get('dead_letters_new'))}, "
              f"seen again {_n(c.get('dead_letters_seen'))}")
    con.print(f"pass rate {rate:.2%}" if rate is not None else "pass rate -")
    con.print(f"duration {m['duration_s']:.1f}s   report folder: {outcome.report_dir}")
    if outcome.error:
        from rich.markup import escape

        con.print(f"[red]FAILED[/red] {escape(str(outcome.error))}")


def _n(v: Any) -> str:
    return "-" if v is None else f"{v:,}"


def _s(v: Any) -> str:
    return "-" if v is None else f"{v:.2f}"


# -- status ---------------------------------------------------------------------------------------

def cmd_status(args: argparse.Namespace) -> int:
    from .store import Store

    settings = _settings(args)
    store = Store(settings)
    store.ping()
    store.create_schema()
    data = store.status(limit=args.limit)
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    from rich.table import Table

    con = _console()
    table = Table(title=f"last runs ({data['database']})")
    for col in ("run_id", "kind", "status", "window", "extracted", "loaded", "rejected", "pass rate", "seconds",
                "error"):
        table.add_column(col)
    for r in data["runs"]:
        rejected = (r["rejected_transform"] or 0) + (r["rejected_quality"] or 0) if r["extracted"] is not None else None
        table.add_row(r["run_id"], r["kind"], r["status"], f"{r['window_since']} → {r['window_until']}",
                      _n(r["extracted"]), _n(r["loaded"]), _n(rejected),
                      f"{r['pass_rate']:.2%}" if r["pass_rate"] is not None else "-",
                      _s(r["duration_s"]), (r.get("failure_class") or "") + (": " + r["error"][:60] if r.get("error") else ""))
    con.print(table)
    con.print(f"watermark: {data['watermark'] or '(none yet)'}")
    dl = data["dead_letters"]
    con.print(f"dead letters pending: {dl['pending']} (replayed {dl['replayed']}, discarded {dl['discarded']})")
    for stage, reasons in dl["pending_by_stage_reason"].items():
        con.print(f"  {stage}: " + ", ".join(f"{k} {v}" for k, v in reasons.items()))
    return 0


# -- backfill / replay / schedule ----------------------------------------------------------------

def cmd_backfill(args: argparse.Namespace) -> int:
    from .demo_api import serve_demo

    try:
        start, end = parse_instant(args.start), parse_instant(args.end)
    except ValueError as e:
        raise SettingsError(f"backfill: {e}") from None
    if start >= end:
        raise SettingsError(f"backfill: --start {iso(start)} must be before --end {iso(end)}")
    try:
        chunk = parse_duration(args.chunk)
    except ValueError as e:
        raise SettingsError(f"backfill --chunk: {e}") from None
    if chunk.total_seconds() <= 0:
        raise SettingsError("backfill --chunk must be longer than zero, e.g. 1d or 6h")
    if args.workers < 1:
        raise SettingsError("backfill --workers must be at least 1")
    settings = _settings(args, require_api=not args.demo)
    with serve_demo(settings) if args.demo else nullcontext():
        kernel = _early_kernel(settings) if args.workers == 1 else None  # the inline partitions share it
        try:
            from .backfill import partitions, run_backfill

            parts = partitions(start, end, chunk)
            print(f"backfill window [{iso(start)}, {iso(end)}) UTC in {len(parts)} partition(s) of {args.chunk}")
            results = run_backfill(settings, parts, workers=args.workers, rerun=args.rerun, wait=args.wait,
                                   kernel=kernel)
        finally:
            if kernel:
                kernel.shutdown()
    from rich.table import Table

    table = Table(title="backfill partitions")
    for col in ("partition", "result", "run_id", "extracted", "loaded", "rejected", "error"):
        table.add_column(col)
    for r in results:
        table.add_row(f"{iso(r.since)} → {iso(r.until)}", r.result, r.run_id or "-", _n(r.extracted), _n(r.loaded),
                      _n(r.rejected), (r.error or "")[:80])
    _console().print(table)
    failed = sum(r.result == "failed" for r in results)
    print(f"{len(results) - failed} ok or skipped, {failed} failed")
    return 1 if failed else 0


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay import replay_dead_letters

    settings = _settings(args)
    return replay_dead_letters(settings, dry_run=args.dry_run, wait=args.wait, out=_console())


def cmd_schedule(args: argparse.Namespace) -> int:
    from .scheduler import run_schedule

    if args.every:
        try:
            if parse_duration(args.every).total_seconds() <= 0:
                raise ValueError("must be longer than zero")
        except ValueError as e:
            raise SettingsError(f"schedule --every: {e}") from None
    _settings(args, require_api=not args.demo)  # validate once, up front
    passthrough = []
    if args.params:
        passthrough += ["--params", args.params]
    for o in args.overrides:
        passthrough += ["-p", o]
    if args.demo:
        passthrough.append("--demo")
    return run_schedule(every=args.every, cron=args.cron, run_args=passthrough)


# -- demo API / params ----------------------------------------------------------------------------

def cmd_demo_api(args: argparse.Namespace) -> int:
    from .demo_api import DEMO_KEY, DemoConfig, DemoData, DemoServer, FaultPlan, parse_faults

    try:
        start = parse_instant(args.start)
    except ValueError as e:
        raise SettingsError(f"demo-api --start: {e}") from None
    if args.fault_every < 1:
        raise SettingsError("demo-api --fault-every must be at least 1")
    data = DemoData(DemoConfig(seed=args.seed, events_per_hour=args.events_per_hour, dirty_share=args.dirty_share,
                               duplicate_share=args.duplicate_share, start=start))
    faults = FaultPlan(parse_faults(args.faults), every=args.fault_every, retry_after=args.retry_after,
                       slow_s=args.slow_s)
    key = os.environ.get("API_KEY") or DEMO_KEY
    try:
        server = DemoServer(data, host=args.host, port=args.port, api_key=key, faults=faults)
    except OSError as e:
        raise SettingsError(f"demo-api cannot listen on {args.host}:{args.port} ({e.strerror}): pick another --port") from None

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    key_note = "the key in API_KEY" if os.environ.get("API_KEY") else f"key {DEMO_KEY!r}"
    print(f"demo API at {server.url}/analytics ({key_note}); Ctrl-C stops it", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    """Plain aligned lines, so the list survives pipes and grep."""
    rows = [(key, t, json.dumps(default), h) for key, (t, default, h) in known_params().items()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"{'key':<{widths[0]}}  {'type':<{widths[1]}}  {'default':<{widths[2]}}  meaning")
    for key, t, default, h in rows:
        print(f"{key:<{widths[0]}}  {t:<{widths[1]}}  {default:<{widths[2]}}  {h}")
    return 0


COMMANDS = {
    "run": cmd_run, "status": cmd_status, "backfill": cmd_backfill, "replay-dlq": cmd_replay,
    "schedule": cmd_schedule, "demo-api": cmd_demo_api, "params": cmd_params,
}
