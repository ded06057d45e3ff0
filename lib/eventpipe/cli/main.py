"""Commands: ``run``, ``status``, ``backfill``, ``replay-dlq``, ``schedule``, ``demo-api``, ``params``, ``report``.

A thin layer: it parses, resolves settings, then calls orchestration and storage, and hands results
to ``render``. Exit codes: 0 the run succeeded (or there was nothing to do), 1 it failed, 2 a user mistake
(one line), 3 it loaded but its audit files could not all be written (``report RUN_ID`` writes them), 130 and
143 it was stopped by SIGINT or SIGTERM (and recorded as ``failed``, class ``terminated``).
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import clock
from ..errors import AuditIncomplete, PipelineError, SettingsError, Terminated
from ..logs import redact_console, setup_cli_logging
from ..orchestration.stopping import STOP
from ..settings import (
    PROJECT_ROOT,
    DemoSettings,
    Redactor,
    Settings,
    _to_plain,
    iso,
    known_params,
    parse_duration,
    parse_instant,
    parse_window,
    read_secret,
)
from ..settings.pipelines import DEFAULT_PIPELINE, pipeline_names, resolve_pipeline
from ..words import counted
from .audit import add_report_parser, cmd_report, status_run
from .serve import serve_until_interrupted

if TYPE_CHECKING:  # imported lazily at run time (see "Heavy modules" below)
    from ..orchestration.kernel import SharedKernel

log = logging.getLogger("eventpipe.cli")
DEMO_PARAMS = str(PROJECT_ROOT / "params" / "demo.yaml")
MAX_PARTITIONS = 100_000  # one run record and one papermill run each


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
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print papermill's cell-by-cell log, the notebooks' outputs and debug lines "
        "(always in the run's run.log)",
    )
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

    sc = sub.add_parser(
        "schedule", help="run incrementally on an interval or cron, never overlapping (each pipeline its own)"
    )
    _common(sc)
    when = sc.add_mutually_exclusive_group()
    when.add_argument("--every", help="interval, e.g. 15m (default: the pipeline's schedule.every)")
    when.add_argument(
        "--cron", help='crontab expression, e.g. "*/15 * * * *" (UTC; default: the pipeline\'s schedule.cron)'
    )
    sc.add_argument(
        "--all", action="store_true", help="every pipeline of params/pipelines/, each on its own schedule"
    )
    sc.add_argument("--demo", action="store_true", help="use the bundled demo API and params/demo.yaml")

    _demo_api_parser(sub)

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

    pp = sub.add_parser(
        "params",
        help="list every parameter with its type, default and meaning (with --pipeline or --params: its value)",
    )
    _common(pp)
    add_report_parser(sub, _common)
    return parser


def _demo_api_parser(sub: Any) -> None:
    """``demo-api``: its styles and faults read from their registries, so a new one shows here by itself."""
    from ..demo.faults import FAULT_KINDS
    from ..demo.styles import ENDPOINTS, STYLES

    api = sub.add_parser(
        "demo-api",
        help="serve the demo API (synthetic events, optional faults)",
        description="Serve the bundled demo API on loopback: seeded synthetic events in one of "
        f"{len(STYLES)} wire formats, with faults on request. Ctrl-C stops it.",
    )
    api.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    api.add_argument(
        "--port", type=int, default=8765, help="port to listen on, 0 for any free one (default 8765)"
    )
    demo = DemoSettings()
    meaning = {key: text for key, (_, _, text) in known_params().items()}
    for name, default in (
        ("seed", demo.seed),
        ("events-per-hour", demo.events_per_hour),
        ("dirty-share", demo.dirty_share),
        ("duplicate-share", demo.duplicate_share),
    ):
        key = name.replace("-", "_")
        api.add_argument(
            f"--{name}",
            type=type(default),
            default=default,
            help=f"{meaning[f'demo.{key}']} (default {default}; as demo.{key} in params)",
        )
    api.add_argument("--start", default="2024-01-01", help="first instant with events (default 2024-01-01)")
    api.add_argument(
        "--now",
        default="",
        help="the server's clock, pinned: no events after this instant (default: the clock, EVENTPIPE_NOW if set)",
    )
    api.add_argument(
        "--style",
        default="contract",
        choices=STYLES,
        metavar="STYLE",
        help="wire format, read back by the presets in params/sources/ (default contract): "
        + ", ".join(f"{style} ({ENDPOINTS[style]})" for style in STYLES),
    )
    api.add_argument(
        "--faults",
        default="",
        metavar="KIND,...",
        help="faults to inject, a comma list of: " + ", ".join(FAULT_KINDS),
    )
    api.add_argument(
        "--fault-every", type=int, default=3, help="every Nth request gets the next fault (default 3)"
    )
    api.add_argument("--retry-after", default="1", help="seconds sent in Retry-After on 429 (default 1)")
    api.add_argument("--slow-s", type=float, default=2.0, help="delay of a slow page, seconds (default 2)")
    api.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="delay before every answer (a far-away API), ms (default 0)",
    )


def _settings(args: argparse.Namespace, require_api: bool = False) -> Settings:
    settings = resolve_pipeline(
        args.pipeline,
        args.params,
        args.overrides,
        require_api=require_api,
        fallback_params=DEMO_PARAMS if getattr(args, "demo", False) else None,
    )
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
    verbose = getattr(args, "verbose", False)
    setup_cli_logging(
        logging.DEBUG if verbose else logging.INFO, getattr(args, "log_format", "text"), verbose
    )
    if args.command in ("run", "backfill", "replay-dlq"):
        STOP.install()  # SIGTERM and SIGINT stop the run and record it before the command exits
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


def ended(outcome: Any) -> int:
    """The exit code of a run that ended (``render.outcome`` printed it): 0 succeeded, 1 failed, 3 loaded with
    audit files missing (one line says what was loaded and what was not written); a run stopped by a signal
    raises ``Terminated`` (130, 143), whose line says it was recorded."""
    problem = outcome.audit_problem
    if problem is not None:
        sys.stderr.write(f"error: {_audit_line(outcome)}\n")
    if outcome.terminated:
        raise STOP.error(outcome.run_id, outcome.error.stage)
    if outcome.status != "succeeded":
        return 1
    return problem.exit_code if problem is not None else 0


def _audit_line(outcome: Any) -> str:
    p = outcome.audit_problem
    what = f"({p.reason}); make room or fix the folder, then run `report {outcome.run_id}` to write them"
    unwritten = f"its audit files could not be written: {', '.join(p.files)} {what}"
    if outcome.status != "succeeded":
        return f"run {outcome.run_id} is recorded as {outcome.status}, but {unwritten}"
    c = outcome.metrics.known_counts()
    loaded = c.get("loaded")
    rows = (
        "its rows"
        if loaded is None
        else f"{loaded:,} row(s) (inserted {c.get('inserted', 0):,}, updated {c.get('updated', 0):,})"
    )
    return (
        f"run {outcome.run_id} loaded {rows} for [{outcome.metrics.since}, {outcome.metrics.until}) and is "
        f"recorded as succeeded, but {unwritten}"
    )


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
    failed, incomplete = [], []
    for name in names:  # one after another: each run has the machine's cores to itself
        print(f"pipeline {name}")
        args.pipeline = name
        try:
            code = _run_once(args)
        except Terminated:
            raise  # a signal stops every pipeline's run, not just this one
        except PipelineError as e:
            sys.stderr.write(f"error: pipeline {name}: {args.redactor.redact(str(e))}\n")
            code = e.exit_code or 1
        if code == AuditIncomplete.exit_code:
            incomplete.append(name)  # loaded: not a failure
        elif code:
            failed.append(name)
    print(
        f"{len(names) - len(failed)} of {counted(len(names), 'pipeline')} ok"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + (f"; loaded without all their audit files: {', '.join(incomplete)}" if incomplete else "")
    )
    return 1 if failed else (AuditIncomplete.exit_code if incomplete else 0)


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
                from .progress import stage_lines

                # with -v the log scrolls by: plain stage lines, not a display updated in place; with JSON
                # log lines, the stage lines are log lines too (one JSON object a line on stderr)
                json_log = args.log_format == "json"
                with stage_lines(
                    terminal=False if args.verbose else None, emit=log.info if json_log else None
                ) as on_stage:
                    outcome = runner.execute(plan, on_stage)
        finally:
            if kernel:
                kernel.shutdown()
    from . import render

    render.outcome(outcome)
    return ended(outcome)


# -- status ---------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    from ..storage.store import Store, pipeline_entry

    if args.limit < 1:
        raise SettingsError(f"status --limit {args.limit}: must be at least 1")
    settings = _settings(args)
    store = Store(settings)
    store.ping()
    store.create_schema()
    from ..orchestration.recovery import recover

    recover(settings, store)  # a run whose process died is never shown as running: marked interrupted here
    if args.run:
        return status_run(store, args.run, args.json)
    data = store.status(limit=args.limit)
    data["pipeline"] = store.pipeline
    for r in data["runs"]:
        r["lateness"] = _run_lateness(r.get("report_dir"))
    # the pipelines the database holds state of, and those defined that never ran yet
    entries = {p["pipeline"]: p for p in store.pipelines()}
    named = set(pipeline_names())
    for name in {*named, store.pipeline} - set(entries):
        entries[name] = pipeline_entry(name)
    # a plain ``status`` where only named pipelines ran: ``default`` is nobody's pipeline, so neither its
    # empty line nor its empty runs are shown (``--pipeline default`` still shows them)
    unused_default = (
        args.pipeline is None
        and store.pipeline == DEFAULT_PIPELINE
        and entries[DEFAULT_PIPELINE]["health"] == "new"
        and DEFAULT_PIPELINE not in named
        and len(entries) > 1
    )
    if unused_default:
        del entries[DEFAULT_PIPELINE]
    data["pipelines"] = [entries[name] for name in sorted(entries)]
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    from . import render

    if unused_default:
        render.pipelines(data["pipelines"], None)
        return 0
    if len(data["pipelines"]) > 1 or store.pipeline != DEFAULT_PIPELINE:
        render.pipelines(data["pipelines"], store.pipeline)
    render.status(data)
    return 0


def _run_lateness(report_dir: str | None) -> dict[str, Any] | None:
    """A run's late rows as its ``metrics.json`` has them (None: not measured, or no file to read)."""
    from ..core.run_metrics import RunMetrics

    try:
        late = RunMetrics.read(Path(report_dir) / "metrics.json").lateness if report_dir else None
    except (OSError, ValueError):
        return None
    return late.to_json() if late else None


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
                f"backfill window [{iso(start)}, {iso(end)}) UTC in {counted(len(parts), 'partition')} of {args.chunk}"
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
    outside = sum(r.outside or 0 for r in results)
    if outside:
        print(
            f"{outside} records returned outside their partition's window: counted as outside_window, not loaded"
        )
    if any(r.late is not None for r in results):
        print(f"late rows (arrived after their partition's end): {sum(r.late or 0 for r in results)}")
    failed = sum(r.result == "failed" for r in results)
    incomplete = sum(r.audit_incomplete for r in results)
    print(
        f"{len(results) - failed} ok or skipped, {failed} failed"
        + (f"; {incomplete} loaded without all their audit files (see `report RUN_ID`)" if incomplete else "")
    )
    return 1 if failed else (3 if incomplete else 0)


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
    return ended(outcome)


def cmd_schedule(args: argparse.Namespace) -> int:
    from ..orchestration.scheduler import Schedule, run_schedule

    if args.all and (args.pipeline is not None or args.params):
        raise SettingsError("schedule --all schedules every pipeline: leave out --pipeline and --params")
    names = pipeline_names() if args.all else [args.pipeline]
    if not names:
        raise SettingsError("schedule --all: no pipelines yet: add params/pipelines/NAME.yaml")
    schedules = []
    for name in names:  # each checked once, up front: a bad one stops the scheduler before any run
        args.pipeline = name
        try:
            settings = _settings(args, require_api=not args.demo)
        except SettingsError as e:
            raise SettingsError(f"pipeline {name}: {e}" if args.all else str(e)) from None
        every, cron = args.every or "", args.cron or ""
        if not (every or cron):
            every, cron = settings.schedule.every, settings.schedule.cron
        label = name or DEFAULT_PIPELINE
        if not (every or cron):
            raise SettingsError(
                f"schedule: pipeline {label} has no schedule: pass --every or --cron, or set schedule.every "
                "(or schedule.cron) in its params"
            )
        passthrough = []
        if args.params:
            passthrough += ["--params", args.params]
        for o in args.overrides:
            passthrough += ["-p", o]
        if name is not None:
            passthrough += ["--pipeline", name]
        if args.demo:
            passthrough.append("--demo")
        schedule = Schedule(label, every, cron, passthrough, from_cli=bool(args.every or args.cron))
        schedule.trigger()
        schedules.append(schedule)
    return run_schedule(schedules)


# -- demo API / params ----------------------------------------------------------------------------


def cmd_demo_api(args: argparse.Namespace) -> int:
    from ..demo.data import DemoConfig, DemoData
    from ..demo.faults import FaultPlan, parse_faults
    from ..demo.server import DEMO_KEY, DEMO_PROJECT_ID, DEMO_PROJECT_SECRET, DEMO_USER, DemoServer
    from ..demo.styles import ENDPOINTS, MIXPANEL_AUTH

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
    if args.style in MIXPANEL_AUTH:
        key_note += (
            f"; a service account is user {DEMO_USER!r} with it and project_id={DEMO_PROJECT_ID}, "
            f"or the project secret {DEMO_PROJECT_SECRET!r} as the user alone"
        )
    serve_until_interrupted(
        server, f"demo API ({args.style}) at {server.url}{ENDPOINTS[args.style]} ({key_note})"
    )
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    """Plain text, wrapped at the terminal's width, or at 80 columns in a pipe (a mail, a log, a pager)."""
    from . import render

    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 80
    known = known_params()
    header = "default"
    if args.pipeline is not None or args.params or args.overrides:
        settings = _settings(args)
        header = f"value (pipeline {settings.pipeline.name})"
        known = {
            key: (
                type_name,
                _to_plain(getattr(getattr(settings, key.split(".")[0]), key.split(".")[1])),
                meaning,
            )
            for key, (type_name, _, meaning) in known.items()
        }
    print("\n".join(render.param_lines(known, width, header)))
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
