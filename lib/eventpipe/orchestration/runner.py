"""Runner: executes the stage notebooks with papermill and turns their scraps into the run's metrics.

Each run gets ``reports/<run_id>/`` (the executed notebooks: the audit log,
``metrics.json`` and ``run.log``) and ``runs/<run_id>/`` (intermediate Parquet).
On any failure the executed notebook is kept, stamped at the top with what
happened and where, the run is marked ``failed`` with a failure class, and a
``StageFailed`` is raised.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..audit.build import finish_run, stage_manifests
from ..audit.metrics_export import emit_lineage, lineage_clients
from ..core.counts import RunCounts
from ..errors import PipelineError, SettingsError, StageFailed, Terminated
from ..jsonio import write_json_atomic
from ..logs import attach_file_log, detach_file_log
from ..rundir import RunDir
from ..settings import Settings, iso, parse_instant, redact
from ..settings_file import RunSettings, with_overrides
from ..storage.store import Store
from .failures import classify, stamp_failure
from .kernel import SharedKernel, check_kernel_name

log = logging.getLogger(__name__)

STAGES = (
    ("extract", "01_extract.ipynb"),
    ("transform_quality", "02_transform_quality.ipynb"),
    ("load", "03_load.ipynb"),
)
SCRAP = "metrics"


def new_run_id(kind: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}-{kind}-{secrets.token_hex(3)}"


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


@dataclass
class RunOutcome:
    run_id: str
    status: str
    metrics: dict[str, Any]
    report_dir: Path
    error: StageFailed | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)


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

    def preflight(self) -> None:
        """Everything that can be checked before a run: database, folders, schema."""
        self.store.ping()  # first: an unreachable database must leave nothing behind
        check_writable(self.reports_dir, "reports dir")
        check_writable(self.runs_dir, "runs dir")
        if self.kernel is None:  # a kernel started early was checked as it started
            check_kernel_name(self.settings.runner.kernel_name)
        self.store.create_schema()

    # -- windows -------------------------------------------------------------------------------

    def incremental_plan(self, full: bool = False, now: datetime | None = None) -> RunPlan | None:
        """``[watermark - overlap, now - settle)``; the first run starts at ``window.initial_since``."""
        now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
        w = self.settings.window
        until = now - w.settle
        if full:
            since, kind = self.settings.quality.min_timestamp, "full"
        else:
            kind = "incremental"
            mark = self.store.watermark()
            if mark is not None:
                since = mark - w.overlap
            elif w.initial_since:
                since = parse_instant(w.initial_since)
            else:
                since = now - timedelta(days=7)
        if since >= until:
            log.info("nothing to read: window [%s, %s) is empty", iso(since), iso(until))
            return None
        return RunPlan(kind, since, until, advance_watermark=True)

    # -- execution -----------------------------------------------------------------------------

    def execute(self, plan: RunPlan) -> RunOutcome:
        import papermill as pm
        import scrapbook as sb

        report_dir = self.reports_dir / plan.run_id
        run_dir = self.runs_dir / plan.run_id
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
        started = time.perf_counter()
        started_at = datetime.now(timezone.utc)
        if plan.resume:  # an orchestrator's next task of a run that started elsewhere
            resumed_s = self.store.resume_run(plan.run_id, plan.kind, plan.since, plan.until, str(report_dir))
            started -= resumed_s
            started_at -= timedelta(seconds=resumed_s)
        else:
            self.store.start_run(
                plan.run_id, plan.kind, plan.since, plan.until, str(report_dir), plan.parent_run_id
            )
            self._lineage("START", {"run_id": plan.run_id, "kind": plan.kind})
        finishes = "load" in plan.stages  # the run ends with this execution
        shared = self.settings.runner.shared_kernel
        kernel, own_kernel = self.kernel, self.kernel is None
        try:
            for stage, notebook in STAGES:
                if stage not in plan.stages:
                    continue
                if kernel is None:  # a run's own kernel: shared by its notebooks, or one per notebook
                    kernel = SharedKernel.for_settings(self.settings)
                out = report_dir / notebook
                t0 = time.perf_counter()
                log.info("stage %s: executing %s", stage, notebook)
                try:
                    pm.execute_notebook(
                        str(self.notebooks_dir / notebook),
                        str(out),
                        parameters=self._parameters(plan, run_dir, stage),
                        kernel_name=self.settings.runner.kernel_name,
                        log_output=True,
                        progress_bar=False,
                        execution_timeout=self.settings.runner.cell_timeout_s,
                        cwd=str(self.notebooks_dir),
                        **kernel.for_next_notebook(),
                    )
                    scraps = sb.read_notebook(str(out)).scraps  # its report folder may be gone meanwhile
                except Terminated:
                    raise
                except Exception as e:  # papermill, nbclient and kernel failures all end the run here
                    seconds[stage] = round(time.perf_counter() - t0, 3)
                    raise self._stage_failure(stage, out, e) from None
                finally:
                    if not shared:
                        kernel.shutdown()
                        kernel = None
                seconds[stage] = round(time.perf_counter() - t0, 3)
                stage_metrics[stage] = scraps[SCRAP].data
                log.info("stage %s: done in %.2fs", stage, seconds[stage])
            metrics = self._metrics(
                plan, report_dir, stage_metrics, seconds, started, "succeeded", started_at
            )
            if finishes:
                RunCounts.from_mapping(metrics["counts"]).check()
                write_json_atomic(report_dir / "metrics.json", metrics)
                self._audit(metrics, report_dir, "COMPLETE")
                if not self.settings.runner.keep_runs:
                    shutil.rmtree(run_dir, ignore_errors=True)  # kept after a failure, for inspection
            return RunOutcome(plan.run_id, "succeeded", metrics, report_dir, stage_seconds=seconds)
        except StageFailed as failure:
            if kernel:
                kernel.discard()  # it may still be busy (a timed-out cell) or hold a half-done stage's state
            stage_metrics.update(stage_manifests(run_dir, stage_metrics))  # e.g. a failed gate's counts
            metrics = self._metrics(plan, report_dir, stage_metrics, seconds, started, "failed", started_at)
            metrics["error"] = {
                "stage": failure.stage,
                "class": failure.failure_class,
                "detail": failure.detail,
            }
            self.store.fail_run(plan.run_id, failure.stage, failure.failure_class, failure.detail)
            write_json_atomic(report_dir / "metrics.json", metrics)
            self._audit(metrics, report_dir, "FAIL")
            log.error("%s", failure)
            return RunOutcome(plan.run_id, "failed", metrics, report_dir, failure, seconds)
        except PipelineError as e:
            cls = "terminated" if isinstance(e, Terminated) else "runner error"
            stage = next((s for s, _ in STAGES if s in plan.stages and s not in seconds), None)
            if stage:
                stamp_failure(report_dir / dict(STAGES)[stage], stage, cls, str(e), self.redact)
            self.store.fail_run(plan.run_id, stage, cls, self.redact(str(e)))
            if kernel:
                kernel.discard()
            raise
        finally:
            if own_kernel and kernel is not None:
                kernel.shutdown()
            detach_file_log(file_log)

    def _audit(self, metrics: dict[str, Any], report_dir: Path, event: str) -> None:
        """The audit trail of a finished run (HTML, ledger, metrics.prom, index) and its lineage event."""
        finish_run(
            self.settings, self.store, metrics, report_dir, [self.notebooks_dir / nb for _, nb in STAGES]
        )
        self._lineage(event, metrics)

    def _lineage(self, event: str, metrics: dict[str, Any]) -> None:
        api = self.settings.api
        source = (api.base_url or "http://demo-api.local").rstrip("/") + api.endpoint
        emit_lineage(self.lineage, event, metrics, source, "analytics", self.settings.lineage.namespace)

    def _parameters(self, plan: RunPlan, run_dir: Path, stage: str) -> dict[str, Any]:
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
        failure = classify(exc, self.settings.runner.cell_timeout_s)
        detail = self.redact(failure.detail)
        stamp_failure(out, stage, failure.failure_class, detail, self.redact)
        return StageFailed(stage, failure.failure_class, detail, str(out) if out.exists() else None)

    def _metrics(
        self,
        plan: RunPlan,
        report_dir: Path,
        stages: dict[str, dict[str, Any]],
        seconds: dict[str, float],
        started: float,
        status: str,
        started_at: datetime,
    ) -> dict[str, Any]:
        counts: dict[str, Any] = {}
        for m in stages.values():
            counts.update({k: m[k] for k in RunCounts.names() if k in m})
        return {
            "run_id": plan.run_id,
            "kind": plan.kind,
            "status": status,
            "window": {"since": iso(plan.since), "until": iso(plan.until)},
            "counts": counts,
            "pass_rate": stages.get("transform_quality", {}).get("pass_rate"),
            "stage_seconds": seconds,
            "duration_s": round(time.perf_counter() - started, 3),
            "started_at": iso(started_at),
            "finished_at": iso(datetime.now(timezone.utc)),
            "stages": stages,
            "report_dir": str(report_dir),
            "database": self.store.masked_url,
            "watermark": stages.get("load", {}).get("watermark"),
        }


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
