"""Commands: ``run``, ``status``, ``backfill``, ``replay-dlq``, ``schedule``, ``demo-api``, ``params``, ``report``.

A thin layer: it parses, resolves settings, then calls orchestration and storage, and hands results
to ``render``. User mistakes print one line and exit 2; pipeline failures exit 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .. import clock
from ..errors import PipelineError, SettingsError, Terminated
from ..logs import redact_console, setup_cli_logging
from ..settings import (
    PROJECT_ROOT,
    DemoSettings,
    Redactor,
    Settings,
    iso,
    known_params,
    load_settings,
    parse_duration,
    parse_instant,
    parse_window,
    read_secret,
)
from ..settings.pipelines import DEFAULT_PIPELINE, named_pipeline, pipeline_names, pipeline_params
from .audit import add_report_parser, cmd_report, status_run
from .serve import serve_until_interrupted

if TYPE_CHECKING:  # imported lazily at run time (see "Heavy modules" below)
    from ..orchestration.kernel import SharedKernel

log = logging.getLogger("eventpipe.cli")
DEMO_PARAMS = str(PROJECT_ROOT / "params" / "demo.yaml")
MAX_PARTITIONS = 100_000  # one run record and one papermill run each
MIN_EVERY_S = 1.0  # schedule --every below this is a typo (1ms ran back-to-back runs)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", metavar="FILE", help="params YAML (default: params/default.yaml if present)")
    p.add_argument(
        "--pipeline", metavar="NAME", help="params/pipelines/NAME.yaml and its own state and table"
    )
    p.add_argument(
        "-p",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one parameter, e.g. -p api.per_page=500 (repeatable)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--log-format", choices=("text", "json"), default="text", help="log lines as text or JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="run_pipeline.py", description="Analytics notebook pipeline (papermill stages).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="incremental run (or --full reload)")
    _common(run)
    run.add_argument("--full", action="store_true", help="re-read from quality.min_timestamp")
    run.add_argument("--demo", action="store_true", help="use the bundled demo API and params/demo.yaml")
    run.add_argument("--wait", action="store_true", help="wait for a run in progress instead of exiting")
    run.add_argument(
        "--all", action="store_true", help="run each pipeline once, one after another (see --pipeline)"
    )

    bf = sub.add_parser("backfill", help="one run per partition of [start, end), resumable")
    _common(bf)
    bf.add_argument("--start", required=True, help="first instant, inclusive (ISO 8601; no offset = UTC)")
    bf.add_argument("--end", required=True, help="last instant, exclusive")
    bf.add_argument("--chunk", default="1d", help="partition size: 1d, 6h, 1h ... (default 1d)")
    bf.add_argument(
        "--workers", type=int, default=1, help="partitions run in parallel, each in its own process"
    )
    bf.add_argument("--rerun", action="store_true", help="also re-run partitions that already succeeded")
    bf.add_argument("--demo", action="store_true", help="use the bundled demo API and params/demo.yaml")
    bf.add_argument("--wait", action="store_true", help="wait for a run in progress instead of exiting")

    st = sub.add_parser("status", help="last runs, watermark, dead letters")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.add_argument("--limit", type=int, default=10, help="how many runs (default 10)")
    st.add_argument("--run", metavar="RUN_ID", help="one run's full entry (counts, error, ledger)")
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
    demo = DemoSettings()
    api.add_argument("--seed", type=int, default=demo.seed)
    api.add_argument("--events-per-hour", type=int, default=demo.events_per_hour)
    api.add_argument("--dirty-share", type=float, default=demo.dirty_share)
    api.add_argument("--duplicate-share", type=float, default=demo.duplicate_share)
    api.add_argument("--start", default="2024-01-01", help="first instant with events (default 2024-01-01)")
    api.add_argument(
        "--now",
        default="",
        help="the server's clock, pinned: no events after this instant (default: the clock, EVENTPIPE_NOW if set)",
    )
    api.add_argument(
        "--style",
        default="contract",
        help="wire format: contract, posthog, mixpanel, amplitude or json-server (read back by params/sources/)",
    )
    api.add_argument(
        "--faults",
        default="",
        help="comma list: 429,429date,500,502,503,504,slow,drop,truncate,missing_items,missing_has_more",
    )
    api.add_argument("--fault-every", type=int, default=3, help="every Nth request gets the next fault")
    api.add_argument("--retry-after", default="1", help="seconds sent in Retry-After on 429")
    api.add_argument("--slow-s", type=float, default=2.0, help="delay of a slow page")
    api.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay before every answer (a far-away API), ms"
    )

    src = sub.add_parser("source", help="check the configured source (source check)")
    src_sub = src.add_subparsers(dest="source_command", required=True, parser_class=_Parser)
    chk = src_sub.add_parser(
        "check",
        help="read the first page of the next run's window: one record before and after the field map, "
        "and what a run would make of every record",
    )
    _common(chk)
    chk.add_argument("--demo", action="store_true", help="use the bundled demo API and params/demo.yaml")
    chk.add_argument(
        "--since", help="window start (default: the next run's window; with --until only, a day before it)"
    )
    chk.add_argument("--until", help="window end (default: the next run's window; with --since only, now)")
    chk.add_argument("--pages", type=int, default=1, help="read up to this many pages (default 1)")

    sub.add_parser("params", help="list every parameter with its type, default and meaning")
    add_report_parser(sub, _common)
    return parser


def _settings(args: argparse.Namespace, require_api: bool = False) -> Settings:
    if args.pipeline is not None and args.params:
        raise SettingsError(
            f"--pipeline {args.pipeline} and --params: give one (a pipeline's params are its YAML "
            "in params/pipelines/)"
        )
    params = args.params
    if params is None and (args.pipeline is not None or not getattr(args, "demo", False)):
        found = pipeline_params(args.pipeline or DEFAULT_PIPELINE)
        params = str(found) if found else None
    if params is None and getattr(args, "demo", False):
        params = DEMO_PARAMS
    settings = load_settings(params, args.overrides, require_api=require_api)
    if args.pipeline is not None:
        settings = named_pipeline(settings, args.pipeline, params)
    args.redactor = settings.redactor  # the secrets of the settings this command resolved leave its output
    redact_console(args.redactor.redact)
    if args.command not in ("status", "report"):
        _check_source(settings)
    return settings


def _check_source(settings: Settings) -> None:
    """The source: section and field map, checked before anything runs (one line, exit 2)."""
    from ..core.fields import FieldMap
    from ..source.config import SourceConfig

    SourceConfig.from_settings(settings, os.environ)
    FieldMap.parse(settings.source.fields)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.redactor = Redactor()  # until the command resolves its settings: URL passwords only
    setup_cli_logging(
        logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        getattr(args, "log_format", "text"),
    )
    if args.command in ("run", "backfill", "replay-dlq"):
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return COMMANDS[args.command](args)
    except PipelineError as e:
        message = args.redactor.redact(str(e))
        sys.stderr.write(f"error: {message}\n" if e.exit_code else f"{message}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except Exception as e:  # a database dropping mid-run and the like: one masked line, not a traceback
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(e, SQLAlchemyError):
            from ..storage.store import database_error

            sys.stderr.write(f"error: database error: {args.redactor.redact(database_error(e))}\n")
            return 1
        raise


def _terminate(signum: int, _frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated(signal.Signals(signum).name)


# -- run ------------------------------------------------------------------------------------------
# Heavy modules (sqlalchemy, papermill, rich) are imported inside the commands, after the notebooks'
# kernel has been launched: on two cores its start-up then overlaps this process's imports.


def _early_kernel(settings: Settings) -> SharedKernel | None:
    """Start the notebooks' shared kernel first, so it boots and imports while this process imports the
    runner, checks the database and takes the run lock (two cores: ~1 s off every run). None: not shared."""
    if not settings.runner.shared_kernel:
        return None
    from ..orchestration.kernel import SharedKernel

    return SharedKernel.for_settings(settings).start()


def _with_demo(settings: Settings, demo: bool) -> AbstractContextManager[Settings]:
    """With ``--demo``: the bundled demo API served from this process, and the settings pointed at it."""
    if not demo:
        return nullcontext(settings)
    from ..demo.server import serving

    return serving(settings)


def cmd_run(args: argparse.Namespace) -> int:
    if not args.all:
        return _run_once(args)
    if args.pipeline is not None or args.params:
        raise SettingsError("run --all runs every pipeline: leave out --pipeline and --params")
    names = pipeline_names()
    if not names:
        raise SettingsError("run --all: no pipelines yet: add params/pipelines/NAME.yaml")
    failed = []
    for name in names:  # one after another: each run has the machine's cores to itself
        print(f"pipeline {name}")
        args.pipeline = name
        try:
            code = _run_once(args)
        except PipelineError as e:
            sys.stderr.write(f"error: pipeline {name}: {args.redactor.redact(str(e))}\n")
            code = e.exit_code or 1
        if code:
            failed.append(name)
    print(
        f"{len(names) - len(failed)} of {len(names)} pipeline(s) ok"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


def _run_once(args: argparse.Namespace) -> int:
    with _with_demo(_settings(args, require_api=not args.demo), args.demo) as settings:
        kernel = _early_kernel(settings)
        try:
            from ..orchestration.runner import Runner
            from ..storage.lock import WindowLocks

            runner = Runner(settings, kernel=kernel)
            runner.preflight()
            # the window is decided under the lock manager, so it starts from the current watermark
            with WindowLocks(runner.store).claim(
                lambda: runner.incremental_plan(full=args.full, now=clock.now()), wait=args.wait
            ) as plan:
                if plan is None:
                    print("nothing to do: the window is empty")
                    return 0
                from ..rundir import RunDir
                from .progress import extract_bar

                with extract_bar(RunDir(runner.runs_dir / plan.run_id).progress):
                    outcome = runner.execute(plan)
        finally:
            if kernel:
                kernel.shutdown()
    from . import render

    render.outcome(outcome)
    return 0 if outcome.status == "succeeded" else 1


# -- status ---------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    from ..storage.store import Store, pipeline_entry

    if args.limit < 1:
        raise SettingsError(f"status --limit {args.limit}: must be at least 1")
    store = Store(_settings(args))
    store.ping()
    store.create_schema()
    if args.run:
        return status_run(store, args.run, args.json)
    data = store.status(limit=args.limit)
    data["pipeline"] = store.pipeline
    # the pipelines the database holds state of, and those defined that never ran yet
    entries = {p["pipeline"]: p for p in store.pipelines()}
    for name in {*pipeline_names(), store.pipeline} - set(entries):
        entries[name] = pipeline_entry(name)
    data["pipelines"] = [entries[name] for name in sorted(entries)]
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    from . import render

    if len(data["pipelines"]) > 1 or store.pipeline != DEFAULT_PIPELINE:
        render.pipelines(data["pipelines"], store.pipeline)
    render.status(data)
    return 0


# -- backfill / replay / schedule ----------------------------------------------------------------


def cmd_backfill(args: argparse.Namespace) -> int:
    try:
        start, end = parse_window(args.start, args.end, ("--start", "--end"))
    except ValueError as e:
        raise SettingsError(f"backfill: {e}") from None
    try:
        chunk = parse_duration(args.chunk)
    except ValueError as e:
        raise SettingsError(f"backfill --chunk: {e}") from None
    if chunk.total_seconds() <= 0:
        raise SettingsError("backfill --chunk must be longer than zero, e.g. 1d or 6h")
    if (end - start) / chunk > MAX_PARTITIONS:
        raise SettingsError(
            f"backfill: --chunk {args.chunk} splits the window into more than {MAX_PARTITIONS:,} partitions: "
            "use a longer --chunk"
        )
    if args.workers < 1:
        raise SettingsError("backfill --workers must be at least 1")
    with _with_demo(_settings(args, require_api=not args.demo), args.demo) as settings:
        kernel = _early_kernel(settings) if args.workers == 1 else None  # the inline partitions share it
        try:
            from ..orchestration.backfill import partitions, run_backfill

            parts = partitions(start, end, chunk)
            print(
                f"backfill window [{iso(start)}, {iso(end)}) UTC in {len(parts)} partition(s) of {args.chunk}"
            )
            from .progress import backfill_bar

            with backfill_bar(len(parts)) as on_result:
                results = run_backfill(
                    settings,
                    parts,
                    workers=args.workers,
                    rerun=args.rerun,
                    wait=args.wait,
                    kernel=kernel,
                    on_result=on_result,
                )
        finally:
            if kernel:
                kernel.shutdown()
    from . import render

    render.partitions(results)
    failed = sum(r.result == "failed" for r in results)
    print(f"{len(results) - failed} ok or skipped, {failed} failed")
    return 1 if failed else 0


def cmd_replay(args: argparse.Namespace) -> int:
    from ..orchestration import replay
    from . import render

    settings = _settings(args)
    if args.dry_run:
        render.dry_run(replay.dry_run(settings))
        return 0
    outcome = replay.replay(settings, wait=args.wait)
    if outcome is None:
        render.console().print("no pending dead letters")
        return 0
    render.outcome(outcome)
    return 0 if outcome.status == "succeeded" else 1


def cmd_schedule(args: argparse.Namespace) -> int:
    from ..orchestration.scheduler import run_schedule

    if args.every:
        try:
            if parse_duration(args.every).total_seconds() < MIN_EVERY_S:
                raise ValueError(
                    f"{args.every!r} is too short: the interval must be at least {MIN_EVERY_S:g}s"
                )
        except ValueError as e:
            raise SettingsError(f"schedule --every: {e}") from None
    _settings(args, require_api=not args.demo)  # validate once, up front
    passthrough = []
    if args.params:
        passthrough += ["--params", args.params]
    for o in args.overrides:
        passthrough += ["-p", o]
    if args.pipeline is not None:
        passthrough += ["--pipeline", args.pipeline]
    if args.demo:
        passthrough.append("--demo")
    return run_schedule(every=args.every, cron=args.cron, run_args=passthrough)


# -- demo API / params ----------------------------------------------------------------------------


def cmd_demo_api(args: argparse.Namespace) -> int:
    from ..demo.data import DemoConfig, DemoData
    from ..demo.faults import FaultPlan, parse_faults
    from ..demo.server import DEMO_KEY, DemoServer
    from ..demo.styles import ENDPOINTS

    try:
        start = parse_instant(args.start)
    except ValueError as e:
        raise SettingsError(f"demo-api --start: {e}") from None
    try:
        now = parse_instant(args.now) if args.now else None
    except ValueError as e:
        raise SettingsError(f"demo-api --now: {e}") from None
    if args.fault_every < 1:
        raise SettingsError("demo-api --fault-every must be at least 1")
    if not 0 <= args.latency_ms <= 60_000:
        raise SettingsError("demo-api --latency-ms must be between 0 and 60000")
    if not 0 <= args.port <= 65535:
        raise SettingsError(f"demo-api --port {args.port}: use a port from 0 (any free one) to 65535")
    data = DemoData(
        DemoConfig(
            seed=args.seed,
            events_per_hour=args.events_per_hour,
            dirty_share=args.dirty_share,
            duplicate_share=args.duplicate_share,
            start=start,
            now=now,
        )
    )
    faults = FaultPlan(
        parse_faults(args.faults), every=args.fault_every, retry_after=args.retry_after, slow_s=args.slow_s
    )
    env_key = read_secret(os.environ, "API_KEY")
    key = env_key or DEMO_KEY
    try:
        server = DemoServer(
            data,
            host=args.host,
            port=args.port,
            api_key=key,
            faults=faults,
            style=args.style,
            latency_s=args.latency_ms / 1000,
        )
    except OSError as e:
        raise SettingsError(
            f"demo-api cannot listen on {args.host}:{args.port} ({e.strerror}): pick another --port"
        ) from None

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    key_note = "the key in API_KEY" if env_key else f"key {DEMO_KEY!r}"
    serve_until_interrupted(
        server, f"demo API ({args.style}) at {server.url}{ENDPOINTS[args.style]} ({key_note})"
    )
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    """Plain text, wrapped at the terminal's width, or at 80 columns in a pipe (a mail, a log, a pager)."""
    from . import render

    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 80
    print("\n".join(render.param_lines(known_params(), width)))
    return 0


def cmd_report_command(args: argparse.Namespace) -> int:
    return cmd_report(args, _settings(args))


def cmd_source(args: argparse.Namespace) -> int:
    from ..orchestration.source_check import CheckWindow, check_source, next_run_window
    from .render import source_check

    if args.pages < 1:
        raise SettingsError("source check: --pages must be at least 1")
    with _with_demo(_settings(args, require_api=not args.demo), args.demo) as settings:
        if args.since or args.until:
            until = parse_instant(args.until) if args.until else clock.now()
            since = parse_instant(args.since) if args.since else until - timedelta(days=1)
            if until <= since:
                raise SettingsError("source check: --until must be after --since")
            window = CheckWindow(since, until, "as asked with --since/--until")
        else:
            window = next_run_window(settings)
            if window.since >= window.until:
                print(f"nothing to read yet: {window.why} is empty")
                return 0
        source_check(check_source(settings, window, args.pages))
    return 0


COMMANDS = {
    "run": cmd_run,
    "status": cmd_status,
    "backfill": cmd_backfill,
    "replay-dlq": cmd_replay,
    "schedule": cmd_schedule,
    "demo-api": cmd_demo_api,
    "params": cmd_params,
    "report": cmd_report_command,
    "source": cmd_source,
}
