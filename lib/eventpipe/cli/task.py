"""One stage of a run as an orchestrator's task, in the project's environment.

``python -m eventpipe.cli.task extract --run-id R --since S --until U [--kind airflow] [--pipeline NAME]
[--params F] [-p K=V]…``
runs that stage's notebook exactly as the CLI runner does (same report folder,
failure class and banner, run record), claiming the run's window for the
stage's duration. The first stage records the run; the later ones resume it and
read the earlier stages' metrics from their executed notebooks, so the tasks of
one run may execute in different processes or on different hosts that share
the database, ``paths.runs_dir`` and ``paths.reports_dir``.

``python -m eventpipe.cli.task mark-failed --run-id R --failed-stage S --detail TEXT`` is for
the orchestrator when a stage's process died before it could say so itself.

Exit codes: 0 the stage succeeded, 1 it failed (the run is marked ``failed``), 2 bad settings, 3 it succeeded
but its audit files could not all be written, 143 (130) it was stopped by SIGTERM (SIGINT): the run is marked
``failed`` (``terminated``) and its report written first.

``--pipeline NAME`` runs the pipeline ``NAME`` (its state, table and window locks) with
``params/pipelines/NAME.yaml``, or with the ``--params`` file when one is given (an orchestrator's DAG
may keep a pipeline's params elsewhere); without it, the pipeline ``default``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..errors import PipelineError, SettingsError
from ..logs import setup_cli_logging
from ..orchestration.failures import stamp_failure
from ..orchestration.runner import STAGES, Runner, RunPlan
from ..orchestration.stopping import STOP
from ..settings import Settings, load_settings, parse_instant
from ..settings.pipelines import check_destination, named_pipeline, resolve_pipeline

log = logging.getLogger(__name__)

STAGE_NAMES = tuple(s for s, _ in STAGES)


def run_stage(runner: Runner, plan: RunPlan, wait: bool = True) -> int:
    """Execute ``plan.stages`` (one stage) while holding the run's window; 0 on success, 1 on failure."""
    from ..storage.lock import WindowLocks
    from .progress import stage_lines

    runner.preflight()
    # a task's log is not a terminal: a plain line for its stage (papermill's cell log stays in run.log)
    with WindowLocks(runner.store).hold(plan.since, plan.until, plan.run_id, wait=wait):
        with stage_lines(terminal=False) as on_stage:
            outcome = runner.execute(plan, on_stage)
    if outcome.terminated:
        raise STOP.error(outcome.run_id, plan.stages[0])
    if outcome.status != "succeeded":
        print(f"{outcome.error}", file=sys.stderr)
        return 1
    if outcome.audit_problem is not None:
        print(f"error: {outcome.audit_problem}", file=sys.stderr)
        return outcome.audit_problem.exit_code
    return 0


def mark_failed(runner: Runner, run_id: str, stage: str, failure_class: str, detail: str) -> None:
    """Record a stage whose process died (killed, out of memory) the way the runner records a failure."""
    stamp_failure(runner.reports_dir / run_id / dict(STAGES)[stage], stage, failure_class, detail)
    runner.store.fail_run(run_id, stage, failure_class, detail)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eventpipe.cli.task", description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=[*STAGE_NAMES, "mark-failed"])
    p.add_argument("--run-id", required=True)
    p.add_argument("--since", help="window start (ISO 8601, UTC unless it has an offset)")
    p.add_argument("--until", help="window end, exclusive")
    p.add_argument("--kind", default="airflow", help="the run's kind in pipeline_runs")
    p.add_argument(
        "--pipeline",
        default=None,
        metavar="NAME",
        help="the pipeline (default: default); its params are params/pipelines/NAME.yaml unless --params",
    )
    p.add_argument("--params", dest="params_file", help="a params YAML file")
    p.add_argument("-p", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--no-wait", action="store_true", help="fail at once when an overlapping window is being written"
    )
    p.add_argument("--failed-stage", choices=STAGE_NAMES, help="mark-failed: the stage whose process died")
    p.add_argument("--failure-class", default="interrupted", help="mark-failed: the failure class to record")
    p.add_argument(
        "--detail", default="the stage's process died before it finished", help="mark-failed: the error"
    )
    return p


def task_settings(pipeline: str | None, params_file: str | None, overrides: Sequence[str]) -> Settings:
    """The settings of ``pipeline``: its params file (or ``params_file``) and ``overrides``; resolved as the
    CLI resolves them, but that a pipeline may take its params from a file outside params/pipelines/."""
    if pipeline is None or not params_file:
        return resolve_pipeline(pipeline, params_file or None, overrides)
    # an orchestrator's DAG may keep a pipeline's params elsewhere: that file, under the pipeline's name
    settings = named_pipeline(load_settings(params_file, list(overrides)), pipeline, params_file)
    check_destination(settings)
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_cli_logging()
    STOP.install()  # an orchestrator stops a task with SIGTERM: the run is marked failed and reported first
    try:
        runner = Runner(task_settings(args.pipeline, args.params_file, args.overrides))
        if args.stage == "mark-failed":
            if not args.failed_stage:
                raise SettingsError("mark-failed needs --failed-stage")
            mark_failed(runner, args.run_id, args.failed_stage, args.failure_class, args.detail)
            return 0
        if not (args.since and args.until):
            raise SettingsError(f"{args.stage} needs --since and --until")
        try:
            since, until = parse_instant(args.since), parse_instant(args.until)
        except ValueError as e:
            raise SettingsError(f"window: {e}") from None
        plan = RunPlan(
            args.kind,
            since,
            until,
            run_id=args.run_id,
            stages=(args.stage,),
            resume=args.stage != STAGE_NAMES[0],
        )
        return run_stage(runner, plan, wait=not args.no_wait)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code or 1


if __name__ == "__main__":
    sys.exit(main())
