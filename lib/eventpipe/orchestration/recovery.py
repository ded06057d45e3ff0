"""Runs that ended without their audit trail, completed from what their folders hold.

* A run whose process died (SIGKILL, out of memory, a lost machine) cannot record its own end. The next
  command that opens the database (``run``, ``backfill``, ``replay-dlq``, ``status``, ``report``) finds it:
  its row says ``running`` but no live claim holds its window (``storage.lock``: a claim lives exactly as long
  as its holder's lock, so a live run is never taken for dead). It is marked ``failed`` (class
  ``interrupted``, ended at its last sign of life: the newest file it wrote), its claim is released, and its
  report is written from its folders: the banner on the notebook of the stage it died in, the HTML,
  ``metrics.json`` with the counts its stages reported, its page, its ledger and index entries, sealed in
  the chain.
* A run whose audit files could not be written (a full disk: ``audit incomplete``) is completed by
  ``report RUN_ID`` (or ``report``), the same way.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..audit.attest import signing_key
from ..audit.build import finish_run, stage_manifests
from ..audit.chain import LEDGER_FILE, read_json
from ..core.counts import RunCounts
from ..core.run_metrics import RunError, RunMetrics
from ..errors import AuditIncomplete, SettingsError
from ..settings import Settings, iso, parse_instant, redact
from ..storage.lock import WindowLocks
from ..storage.runs import INTERRUPTED, INTERRUPTED_CLASS
from ..storage.store import Store
from .failures import stamp_failure
from .runner import SCRAP, STAGES

log = logging.getLogger(__name__)

LOCK_FILE = ".recovery.lock"


def recover(settings: Settings, store: Store) -> list[str]:
    """Mark the runs of dead processes interrupted and write the reports of interrupted runs that have none
    yet; return the ids of the runs whose reports were written. Trouble writing one is logged, not raised:
    the command that opened the database goes on (``report RUN_ID`` tries again)."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        WindowLocks(store).recover()
        waiting = store.unfinished_audits()
    except (OSError, SQLAlchemyError) as e:  # a database or lock folder this user may only read
        log.warning("runs left by dead processes not checked: %s", e)
        return []
    done = []
    for run_id in waiting:
        row = store.run_entry(run_id)
        if row is None or row.get("failure_class") != INTERRUPTED_CLASS:
            continue  # an incomplete audit waits for `report RUN_ID`: the disk may still be full
        try:
            if complete(settings, store, run_id, row=row):
                done.append(run_id)
        except (AuditIncomplete, SettingsError, OSError) as e:
            log.warning("run %s was interrupted; its report is not written yet: %s", run_id, e)
    return done


def complete(settings: Settings, store: Store, run_id: str, row: dict[str, Any] | None = None) -> bool:
    """Write the audit trail of a run that ended without it (interrupted, or its files not all written) from its
    record and its folders; False when there is nothing to do (already sealed, no folder, another process on
    it). ``AuditIncomplete`` when files still cannot be written; ``SettingsError`` for a run still running."""
    row = row or store.run_entry(run_id)
    if row is None:
        raise SettingsError(f"no run {run_id!r} in {store.masked_url}")
    if row["status"] == "running":
        raise SettingsError(f"run {run_id} is still running: its report is written as it ends")
    report_dir = Path(row["report_dir"]) if row.get("report_dir") else settings.path("reports_dir") / run_id
    if not report_dir.is_dir():
        return False  # died before it made its folder (or on a host whose folder this one cannot see)
    with _exclusive(report_dir.parent) as mine:
        if not mine or (report_dir / LEDGER_FILE).is_file():
            return False
        run_dir = settings.path("runs_dir") / run_id
        metrics = _metrics(row, report_dir, run_dir, store)
        if row.get("failure_class") == INTERRUPTED_CLASS:
            metrics = _record_death(store, row, metrics, report_dir, run_dir, settings)
        finish_run(
            settings,
            store,
            metrics,
            report_dir,
            [settings.path("notebooks_dir") / nb for _, nb in STAGES],
            signing_key(),
            params=row.get("params") or _run_params(run_dir),
        )
    store.clear_audit(run_id)
    log.info("run %s (%s): report written from its folder", run_id, metrics.status)
    return True


def _record_death(
    store: Store,
    row: dict[str, Any],
    metrics: RunMetrics,
    report_dir: Path,
    run_dir: Path,
    settings: Settings,
) -> RunMetrics:
    """The stage an interrupted run died in, stamped on its notebook and put in its record, with its last sign
    of life as its end."""
    stage = _died_in(metrics, report_dir, row.get("kind") or "")
    last = _last_sign_of_life(report_dir, run_dir)
    if stage:
        stamp_failure(
            report_dir / dict(STAGES)[stage], stage, INTERRUPTED_CLASS, INTERRUPTED, _redactor(settings)
        )
    store.fail_run(row["run_id"], stage, INTERRUPTED_CLASS, INTERRUPTED, finished_at=last)
    metrics.error = RunError(stage, INTERRUPTED_CLASS, INTERRUPTED)
    if last is not None:
        metrics.finished_at = iso(last)
        started = parse_instant(metrics.started_at) if metrics.started_at else None
        metrics.duration_s = round(max(0.0, (last - started).total_seconds()), 3) if started else None
    return metrics


def _redactor(settings: Settings) -> Any:
    return lambda text: redact(text, settings)


def _died_in(metrics: RunMetrics, report_dir: Path, kind: str) -> str | None:
    """The first stage whose notebook glued no metrics, or the one after the last that did."""
    stages = [s for s, _ in STAGES if not (kind == "replay" and s == "extract")]
    for stage in stages:
        if stage not in metrics.stages or not (report_dir / dict(STAGES)[stage]).is_file():
            return stage
    return None


def _last_sign_of_life(*folders: Path) -> datetime | None:
    newest = 0.0
    for folder in folders:
        if folder.is_dir():
            for p in folder.rglob("*"):
                try:
                    newest = max(newest, p.stat().st_mtime)
                except OSError:
                    continue
    return datetime.fromtimestamp(newest, timezone.utc).replace(microsecond=0) if newest else None


def _metrics(row: dict[str, Any], report_dir: Path, run_dir: Path, store: Store) -> RunMetrics:
    """The run's ``metrics.json`` as the runner wrote it when it did (and it agrees with the record), else made
    from the record and what its stages left: the scraps of their notebooks, the manifests in its run folder."""
    error = RunError(row.get("stage"), row.get("failure_class") or "", row.get("error") or "")
    written = report_dir / "metrics.json"
    if written.is_file():
        try:
            m = RunMetrics.read(written)
        except (OSError, ValueError):
            m = None
        if m is not None and m.status == row["status"]:
            m.ledger = None
            return m
    stages, seconds = _stage_scraps(report_dir)
    stages.update(stage_manifests(run_dir, stages))
    reported = {k: row[k] for k in RunCounts.names() if row.get(k) is not None}
    for m in stages.values():
        reported.update(RunCounts.reported(m))
    failed = row["status"] == "failed"
    return RunMetrics.with_counts(
        reported,
        run_id=row["run_id"],
        kind=row.get("kind") or "",
        status=row["status"],
        since=_iso(row.get("window_since")),
        until=_iso(row.get("window_until")),
        pass_rate=row["pass_rate"]
        if row.get("pass_rate") is not None
        else stages.get("transform_quality", {}).get("pass_rate"),
        stage_seconds=seconds,
        duration_s=row.get("duration_s"),
        started_at=_iso(row.get("started_at")),
        finished_at=_iso(row.get("finished_at")),
        stages=stages,
        report_dir=str(report_dir),
        database=store.masked_url,
        watermark=stages.get("load", {}).get("watermark"),
        pipeline=row.get("pipeline") or "default",
        error=error if failed else None,
    )


def _stage_scraps(report_dir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """Each stage notebook's ``metrics`` scrap and duration, for the notebooks that glued one."""
    import scrapbook as sb

    metrics: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    for stage, notebook in STAGES:
        path = report_dir / notebook
        if not path.is_file():
            continue
        try:
            nb = sb.read_notebook(str(path))
            scraps = nb.scraps
        except Exception:  # noqa: BLE001 - half written by a process that died: it glued nothing readable
            continue
        if SCRAP in scraps:
            metrics[stage] = scraps[SCRAP].data
            seconds[stage] = round(float(nb.metadata.get("papermill", {}).get("duration") or 0.0), 3)
    return metrics, seconds


def _run_params(run_dir: Path) -> dict[str, Any] | None:
    """The resolved parameters the run's notebooks were given (its ``settings.json``), if it is still there."""
    data = read_json(run_dir / "settings.json")
    params = data.get("settings") if data else None
    return params if isinstance(params, dict) else None


def _iso(value: str | None) -> str | None:
    return iso(parse_instant(value)) if value else None


@contextmanager
def _exclusive(reports_dir: Path) -> Iterator[bool]:
    """One process completing runs of this reports folder at a time; the others skip (they would write the
    same files, and seal them twice)."""
    fd = os.open(reports_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
