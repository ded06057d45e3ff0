"""Runner: executes the stage notebooks with papermill and turns their scraps into the run's metrics.

Each run gets ``reports/<run_id>/`` (the executed notebooks: the audit log,
``metrics.json`` and ``run.log``) and ``runs/<run_id>/`` (intermediate Parquet).
On any failure the executed notebook is kept, stamped at the top with what
happened and where, and the run is marked ``failed`` with a failure class; a
SIGTERM or SIGINT (``stopping``) is such a failure, class ``terminated``. Once the
load committed, nothing that happens after it (a stage's later cell, a signal, a
report folder that cannot be written) makes the run a failure.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from ..audit.attest import signing_key
from ..audit.build import HtmlAhead, finish_run, stage_manifests
from ..audit.metrics_export import emit_lineage, lineage_clients
from ..core.counts import LOAD_NAMES, RunCounts
from ..core.lateness import Lateness
from ..core.run_metrics import RunError, RunMetrics
from ..errors import AuditIncomplete, PipelineError, SettingsError, StageFailed
from ..logs import OUTCOME, attach_file_log, detach_file_log
from ..rundir import RunDir, new_run_id
from ..settings import Settings, WindowSettings, format_duration, iso, parse_instant, redact
from ..settings_file import RunSettings, with_overrides
from ..storage.runs import TERMINATED
from ..storage.store import Store
from .alerts import notify
from .failures import Failure, classify, stamp_failure
from .kernel import SharedKernel, check_kernel_name
from .stopping import STOP

log = logging.getLogger(__name__)

STAGES = (
    ("extract", "01_extract.ipynb"),
    ("transform_quality", "02_transform_quality.ipynb"),
    ("load", "03_load.ipynb"),
)
SCRAP = "metrics"


@dataclass
class RunPlan:
    """One papermill run of the stage notebooks over one window."""

    kind: str
    since: datetime
    until: datetime
    run_id: str = ""
    advance_watermark: bool = False
    parent_run_id: str | None = None
    stages: tuple[str, ...] = tuple(s for s, _ in STAGES)
    extra_overrides: tuple[str, ...] = ()
    # the run's earlier stages ran before, in other processes (an orchestrator's tasks): keep its record and
    # read their metrics from the notebooks already in the report folder
    resume: bool = False

    def __post_init__(self) -> None:
        self.run_id = self.run_id or new_run_id(self.kind)


class StageObserver(Protocol):
    """Told as each stage starts (``metrics`` None), ends (its metrics scrap) or fails (``"failed"``): the
    command line's progress lines follow a run through it."""

    def __call__(self, stage: str, event: str, metrics: dict[str, Any] | None, run_dir: Path) -> None: ...


@dataclass
class RunOutcome:
    run_id: str
    status: str
    metrics: RunMetrics
    report_dir: Path
    error: StageFailed | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # the run ended as ``status`` says, but some of its audit files could not be written (``report RUN_ID``)
    audit_problem: AuditIncomplete | None = None

    @property
    def terminated(self) -> bool:
        return self.error is not None and self.error.failure_class == TERMINATED


def check_writable(path: Path, what: str) -> None:
    """Fail before any data is fetched when a folder the run writes to is not writable."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise SettingsError(
            f"{what} {path} is not writable ({e.strerror}): fix its permissions or set "
            f"-p paths.{what.replace(' ', '_')}=<folder>"
        ) from None


def incremental_window(
    w: WindowSettings, watermark: datetime | None, now: datetime
) -> tuple[datetime, datetime, str]:
    """The next incremental run's window, ``[watermark - overlap, now - settle)``, and why it is that one;
    the first run (no watermark yet) starts at ``window.initial_since``, or 7 days before now."""
    until = now - w.settle
    to = f"to now minus window.settle ({format_duration(w.settle)})" if w.settle else "to now"
    if watermark is not None:
        since = watermark - w.overlap
        why = f"from the watermark {iso(watermark)} minus window.overlap ({format_duration(w.overlap)}) {to}"
    elif w.initial_since:
        since = parse_instant(w.initial_since)
        why = f"as the first run (no watermark yet): from window.initial_since {to}"
    else:
        since = now - timedelta(days=7)
        why = f"as the first run (no watermark yet): from 7 days before now (no window.initial_since) {to}"
    return since, until, why


class Runner:
    """Plans windows and executes runs; the CLI and the tests both drive it."""

    def __init__(self, settings: Settings, store: Store | None = None, kernel: SharedKernel | None = None):
        """``kernel``: a ``SharedKernel`` the caller started early and shuts down itself; it then serves
        every run of this runner. Without it, each run starts (and stops) its own."""
        self.settings = settings
        self.store = store or Store(settings)
        self.reports_dir = settings.path("reports_dir")
        self.runs_dir = settings.path("runs_dir")
        self.notebooks_dir = settings.path("notebooks_dir")
        self.kernel = kernel if settings.runner.shared_kernel else None
        self.lineage = lineage_clients(settings.lineage.url, settings.lineage.file)
        self.signing_key = signing_key()  # a bad key stops the command before any run (exit 2)

    def preflight(self) -> None:
        """Everything that can be checked before a run: database, folders, schema."""
        self.store.ping()  # first: an unreachable database must leave nothing behind
        check_writable(self.reports_dir, "reports dir")
        check_writable(self.runs_dir, "runs dir")
        if self.kernel is None:  # a kernel started early was checked as it started
            check_kernel_name(self.settings.runner.kernel_name)
        self.store.create_schema()
        from .recovery import recover

        recover(
            self.settings, self.store
        )  # runs whose process died: marked interrupted, their reports written

    # -- windows -------------------------------------------------------------------------------

    def incremental_plan(self, full: bool = False, now: datetime | None = None) -> RunPlan | None:
        """``[watermark - overlap, now - settle)``; the first run starts at ``window.initial_since``."""
        now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
        if full:
            since, until, kind = (
                self.settings.quality.min_timestamp,
                now - self.settings.window.settle,
                "full",
            )
        else:
            kind = "incremental"
            since, until, _ = incremental_window(self.settings.window, self.store.watermark(), now)
        if since >= until:
            log.info("nothing to read: window [%s, %s) is empty", iso(since), iso(until))
            return None
        return RunPlan(kind, since, until, advance_watermark=True)

    # -- execution -----------------------------------------------------------------------------

    def execute(self, plan: RunPlan, on_stage: StageObserver | None = None) -> RunOutcome:
        """Run ``plan.stages`` in order. A failed stage, or a SIGTERM/SIGINT (``stopping``), ends the run
        ``failed`` (the outcome says so); anything else that stops it (a runner error) marks it failed and
        propagates. A signal before the run is recorded raises ``Terminated``: nothing started."""
        STOP.check()
        with STOP.recording():
            run = self._open(plan)
            try:
                for stage, notebook in STAGES:
                    if stage in plan.stages:
                        self._run_stage(run, stage, notebook, on_stage)
                return self._finish(run)
            except StageFailed as failure:
                if failure.stage == "load" and self.store.run_status(plan.run_id) == "succeeded":
                    return self._loaded_anyway(run, failure)
                return self._fail(run, failure)
            except PipelineError as e:
                self._abort(run, e)
                raise
            finally:
                self._close(run)

    def _open(self, plan: RunPlan) -> _Execution:
        """The run's report folder, its ``run.log`` and its ``pipeline_runs`` row (resumed for a later task)."""
        report_dir = self.reports_dir / plan.run_id
        report_dir.mkdir(parents=True, exist_ok=True)
        stage_metrics, seconds = _earlier_stages(report_dir, plan.stages) if plan.resume else ({}, {})
        file_log = attach_file_log(report_dir / "run.log", self.redact)
        log.info(
            "run %s (%s): window [%s, %s) -> %s",
            plan.run_id,
            plan.kind,
            iso(plan.since),
            iso(plan.until),
            self.store.masked_url,
        )
        run = _Execution(
            plan,
            report_dir,
            self.runs_dir / plan.run_id,
            file_log,
            stage_metrics,
            seconds,
            kernel=self.kernel,
            html_ahead=self._html_ahead(plan),
        )
        records = self.store.records
        try:
            with self.store.engine.begin() as conn:
                if plan.resume:  # an orchestrator's next task of a run that started elsewhere
                    resumed_s = records.resume(
                        conn, plan.run_id, plan.kind, plan.since, plan.until, str(report_dir)
                    )
                    run.started -= resumed_s
                    run.started_at -= timedelta(seconds=resumed_s)
                else:
                    records.start(
                        conn,
                        plan.run_id,
                        plan.kind,
                        plan.since,
                        plan.until,
                        str(report_dir),
                        plan.parent_run_id,
                    )
            if not plan.resume:
                self._lineage("START", plan.run_id, plan.kind)
        except BaseException:
            detach_file_log(file_log)
            if run.html_ahead is not None:
                run.html_ahead.close()
            raise
        return run

    def _html_ahead(self, plan: RunPlan) -> HtmlAhead | None:
        """The execution that ends the run (it runs the load) writes its notebooks' HTML: each stage's page is
        then rendered while the next stage runs (``HtmlAhead``)."""
        if "load" not in plan.stages or not self.settings.reports.html:
            return None
        return HtmlAhead(self.settings.reports.with_code)

    def _run_stage(
        self, run: _Execution, stage: str, notebook: str, on_stage: StageObserver | None = None
    ) -> None:
        """One stage's notebook executed by papermill; its ``metrics`` scrap and its seconds join the run's.
        papermill's cell-by-cell log and the notebook's outputs go to its logger (``run.log``; the console
        shows them with -v only, see ``logs.DETAIL_LOGGERS``)."""
        tell = on_stage or _silent
        import papermill as pm
        import scrapbook as sb

        from .engine import register as papermill_engine

        if run.kernel is None:  # a run's own kernel: shared by its notebooks, or one per notebook
            run.kernel = SharedKernel.for_settings(self.settings)
        out = run.report_dir / notebook
        t0 = time.perf_counter()
        log.info("stage %s: executing %s", stage, notebook)
        tell(stage, "started", None, run.run_dir)
        try:
            kernel = run.kernel.for_next_notebook()
            with STOP.stage(run.kernel.pid):  # a signal now kills this kernel: papermill returns at once
                pm.execute_notebook(
                    str(self.notebooks_dir / notebook),
                    str(out),
                    parameters=self._parameters(run.plan, run.run_dir),
                    kernel_name=self.settings.runner.kernel_name,
                    log_output=True,
                    progress_bar=False,
                    execution_timeout=self.settings.runner.cell_timeout_s,
                    cwd=str(self.notebooks_dir),
                    engine_name=papermill_engine(),
                    **kernel,
                )
            scraps = sb.read_notebook(str(out)).scraps  # its report folder may be gone meanwhile
        except Exception as e:  # papermill, nbclient and kernel failures, and a signal, all end the run here
            run.seconds[stage] = round(time.perf_counter() - t0, 3)
            tell(stage, "failed", {"seconds": run.seconds[stage]}, run.run_dir)
            raise self._stage_failure(stage, out, e) from None
        finally:
            if not self.settings.runner.shared_kernel:
                run.kernel.shutdown()
                run.kernel = None
        if run.kernel is not None:  # shared: cleared for the next notebook while this one's results are read
            run.kernel.notebook_ended()
        run.seconds[stage] = round(time.perf_counter() - t0, 3)
        run.stage_metrics[stage] = scraps[SCRAP].data
        if run.html_ahead is not None:
            run.html_ahead.submit(out)
        log.info("stage %s: done in %.2fs", stage, run.seconds[stage])
        tell(stage, "done", {**run.stage_metrics[stage], "seconds": run.seconds[stage]}, run.run_dir)

    def _finish(self, run: _Execution) -> RunOutcome:
        """The stages ran. When the last one did, the counts are checked and the audit trail written."""
        metrics = self._metrics(run, "succeeded")
        problem = None
        if "load" in run.plan.stages:  # the run ends with this execution
            metrics.counts.check()
            problem = self._audit(run, metrics, "COMPLETE")
            if not self.settings.runner.keep_runs and problem is None:
                shutil.rmtree(run.run_dir, ignore_errors=True)  # kept after a failure, for inspection
        return RunOutcome(
            run.plan.run_id,
            "succeeded",
            metrics,
            run.report_dir,
            stage_seconds=run.seconds,
            audit_problem=problem,
        )

    def _loaded_anyway(self, run: _Execution, failure: StageFailed) -> RunOutcome:
        """The load stage stopped (a signal, a later cell, its kernel) after its transaction committed: the run
        loaded, and is recorded and reported as it is, ``succeeded``."""
        run.discard_kernel()
        log.warning(
            "stage load stopped after its transaction committed (%s: %s): the run is loaded and stays succeeded",
            failure.failure_class,
            failure.detail,
        )
        run.stage_metrics.update(stage_manifests(run.run_dir, run.stage_metrics))
        if "load" not in run.stage_metrics:  # stopped before it wrote its manifest: its record has the counts
            row = self.store.run_entry(run.plan.run_id) or {}
            run.stage_metrics["load"] = {
                "stage": "load",
                **{k: row[k] for k in LOAD_NAMES if row.get(k) is not None},
                "watermark": iso(run.plan.until) if run.plan.advance_watermark else None,
            }
        return self._finish(run)

    def _fail(self, run: _Execution, failure: StageFailed) -> RunOutcome:
        """A stage failed: the run is recorded ``failed`` with what its stages left, and its audit trail written."""
        run.discard_kernel()
        # the stages that glued no scrap may have left a manifest (a failed gate's counts and reasons)
        run.stage_metrics.update(stage_manifests(run.run_dir, run.stage_metrics))
        metrics = self._metrics(run, "failed")
        metrics.error = RunError(failure.stage, failure.failure_class, failure.detail)
        # the counts its stages reported, so that ``status`` shows what the run page shows
        reported = {**metrics.known_counts(), "pass_rate": metrics.pass_rate}
        self.store.fail_run(
            run.plan.run_id, failure.stage, failure.failure_class, failure.detail, values=reported
        )
        log.error("%s", failure, extra={OUTCOME: True})  # in run.log; the caller's summary prints it
        problem = self._audit(run, metrics, "FAIL")
        return RunOutcome(
            run.plan.run_id, "failed", metrics, run.report_dir, failure, run.seconds, audit_problem=problem
        )

    def _abort(self, run: _Execution, e: PipelineError) -> None:
        """Something other than a stage stopped the run (a runner error): the notebook it was in is stamped
        and the run marked failed; the caller re-raises."""
        cls = "runner error"
        stage = next((s for s, _ in STAGES if s in run.plan.stages and s not in run.seconds), None)
        if stage:
            stamp_failure(run.report_dir / dict(STAGES)[stage], stage, cls, str(e), self.redact)
        self.store.fail_run(run.plan.run_id, stage, cls, self.redact(str(e)))
        run.discard_kernel()

    def _close(self, run: _Execution) -> None:
        if self.kernel is None and run.kernel is not None:  # the run's own kernel
            run.kernel.shutdown()
        if run.html_ahead is not None:
            run.html_ahead.close()
        detach_file_log(run.file_log)

    def _audit(self, run: _Execution, metrics: RunMetrics, event: str) -> AuditIncomplete | None:
        """The audit trail of a finished run (HTML, ledger, metrics.prom, index, seal) and its lineage event.
        ``run.log`` is closed first: the seal covers it as it stays. The alerts go before: their lines are in
        ``run.log`` and what they did in ``metrics.json``.

        Files that cannot be written (a full disk) leave the run as it ended: a run that loaded stays
        ``succeeded``, flagged ``audit incomplete`` in its record, and the problem is returned."""
        notify(self.settings, self.store, metrics)
        detach_file_log(run.file_log)
        unwritten = ["run.log"] if getattr(run.file_log, "error", None) else []
        problem = None
        try:
            finish_run(
                self.settings,
                self.store,
                metrics,
                run.report_dir,
                [self.notebooks_dir / nb for _, nb in STAGES],
                self.signing_key,
                unwritten=unwritten,
                html_ahead=run.html_ahead,
            )
        except AuditIncomplete as e:
            problem = e
            if metrics.status == "succeeded":
                self.store.flag_audit(metrics.run_id, str(e))
        self._lineage(event, metrics.run_id, metrics.kind, metrics.stages.get("transform_quality"))
        return problem

    def _lineage(self, event: str, run_id: str, kind: str, transform: dict[str, Any] | None = None) -> None:
        api = self.settings.api
        source = (api.base_url or "http://demo-api.local").rstrip("/") + api.endpoint
        table = self.store.t.analytics.name
        emit_lineage(
            self.lineage,
            event,
            run_id,
            kind,
            source,
            table,
            self.settings.lineage.namespace,
            transform=transform,
            quality=self.settings.quality,
        )

    def _parameters(self, plan: RunPlan, run_dir: Path) -> dict[str, Any]:
        """The notebook's one parameter: the run's resolved settings file, (re)written in its folder."""
        resolved = RunSettings(
            with_overrides(self.settings, plan.extra_overrides),
            plan.run_id,
            plan.kind,
            plan.since,
            plan.until,
            replay=plan.kind == "replay",
            advance_watermark=plan.advance_watermark,
        )
        return {"settings_file": str(resolved.write(RunDir(run_dir).settings_file))}

    def redact(self, text: str) -> str:
        """``text`` without this run's secrets: every message the runner stores or prints passes here."""
        return redact(text, self.settings)

    def _stage_failure(self, stage: str, out: Path, exc: Exception) -> StageFailed:
        if STOP.requested:  # whatever the stage raised as its kernel was killed
            failure = Failure(TERMINATED, f"terminated by {STOP.name} during stage {stage}")
        else:
            failure = classify(exc, self.settings.runner.cell_timeout_s)
        detail = self.redact(failure.detail)
        try:
            stamp_failure(out, stage, failure.failure_class, detail, self.redact)
        except OSError as e:  # a full disk: the run is still recorded, its report says what it could
            log.warning("no failure banner in %s: %s", out, e.strerror or e)
        return StageFailed(stage, failure.failure_class, detail, str(out) if out.exists() else None)

    def _metrics(self, run: _Execution, status: str) -> RunMetrics:
        stages = run.stage_metrics
        reported: dict[str, Any] = {}
        for m in stages.values():
            reported.update(RunCounts.reported(m))
        return RunMetrics.with_counts(
            reported,
            run_id=run.plan.run_id,
            kind=run.plan.kind,
            status=status,
            since=iso(run.plan.since),
            until=iso(run.plan.until),
            pass_rate=stages.get("transform_quality", {}).get("pass_rate"),
            stage_seconds=run.seconds,
            duration_s=round(time.perf_counter() - run.started, 3),
            started_at=iso(run.started_at),
            finished_at=iso(datetime.now(timezone.utc)),
            stages=stages,
            report_dir=str(run.report_dir),
            database=self.store.masked_url,
            watermark=stages.get("load", {}).get("watermark"),
            pipeline=self.settings.pipeline.name,
            lateness=Lateness.from_json(late) if (late := stages.get("load", {}).get("lateness")) else None,
        )


def _silent(stage: str, event: str, metrics: dict[str, Any] | None, run_dir: Path) -> None:
    """No one follows the stages."""


@dataclass
class _Execution:
    """One execution of a plan under way: where it writes, what its stages reported, the kernel it runs in."""

    plan: RunPlan
    report_dir: Path
    run_dir: Path
    file_log: logging.Handler
    stage_metrics: dict[str, dict[str, Any]]
    seconds: dict[str, float]
    started: float = field(default_factory=time.perf_counter)
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    kernel: SharedKernel | None = None
    html_ahead: HtmlAhead | None = None

    def discard_kernel(self) -> None:
        if self.kernel:
            self.kernel.discard()  # it may still be busy (a timed-out cell) or hold a half-done stage's state


def _earlier_stages(
    report_dir: Path, stages: tuple[str, ...]
) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """The metrics scraps and durations of the stages before ``stages``, from their executed notebooks."""
    import scrapbook as sb

    metrics: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    for stage, notebook in STAGES:
        if stage in stages:
            break
        path = report_dir / notebook
        if not path.is_file():
            raise PipelineError(f"{path} is missing: stage {stage} of this run has not run yet")
        nb = sb.read_notebook(str(path))
        if SCRAP not in nb.scraps:
            raise PipelineError(f"{path} has no {SCRAP!r} scrap: stage {stage} of this run did not finish")
        metrics[stage] = nb.scraps[SCRAP].data
        seconds[stage] = round(float(nb.metadata.get("papermill", {}).get("duration") or 0.0), 3)
    return metrics, seconds
