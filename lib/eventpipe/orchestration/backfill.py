"""Backfill: ``[start, end)`` split into partitions, one papermill run each, resumable and parallel.

A partition that already succeeded (same window, kind ``backfill``) is skipped
unless ``--rerun``; failed or interrupted ones run again. Partitions never
move the incremental watermark. With ``workers > 1`` each partition runs in its
own process. Each partition claims its own window (``storage.lock``), so a backfill
never blocks runs over other windows (an incremental run of today's data).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from .. import clock
from ..errors import Terminated
from ..logs import setup_cli_logging
from ..settings import Settings, iso
from ..source.window import WindowSpec
from ..storage.lock import WindowLocks
from .kernel import SharedKernel
from .runner import Runner, RunPlan, new_run_id
from .stopping import STOP, install_in_worker

log = logging.getLogger(__name__)


@dataclass
class PartitionResult:
    since: datetime
    until: datetime
    result: str  # ok / failed / skipped
    run_id: str | None = None
    extracted: int | None = None
    loaded: int | None = None
    rejected: int | None = None
    error: str | None = None
    outside: int | None = None  # returned by its requests, kept by no window of its own (outside_window)
    late: int | None = None  # rows it inserted late (core.lateness), where measured
    audit_incomplete: bool = False  # it loaded, but not all its audit files could be written


def partitions(start: datetime, end: datetime, chunk: timedelta) -> list[tuple[datetime, datetime]]:
    out, cur = [], start
    while cur < end:
        nxt = end if end - cur <= chunk else cur + chunk  # never past ``end`` (nor past year 9999)
        out.append((cur, nxt))
        cur = nxt
    return out


def worker_count(requested: int, partitions: int, settings: Settings) -> int:
    """``--workers``, clamped to the partitions to run and to ``runner.max_workers`` (0: the CPUs); each
    worker is a process with its own kernel, so 1000 of them would only exhaust the machine."""
    cap = settings.runner.max_workers or os.cpu_count() or 1
    workers = max(1, min(requested, partitions, cap))
    if workers < requested:
        log.info(
            "backfill --workers %d clamped to %d (%d partition(s) to run, runner.max_workers %s)",
            requested,
            workers,
            partitions,
            settings.runner.max_workers or f"0 = {cap} CPUs",
        )
    return workers


def one_core_transform(settings: Settings) -> Settings:
    """``settings`` with each run's transform in its kernel alone: partitions already share the CPUs."""
    if settings.runner.transform_workers == 1:
        return settings
    return replace(
        settings,
        runner=replace(settings.runner, transform_workers=1),
        overrides=(*settings.overrides, "runner.transform_workers=1"),
    )


def _run_partition(
    settings: Settings,
    since: datetime,
    until: datetime,
    parent: str,
    wait: bool = False,
    runner: Runner | None = None,
) -> PartitionResult:
    """Run one partition: in a worker process (a runner of its own), or inline with the caller's ``runner``."""
    own = runner is None
    if own:
        if not logging.getLogger().handlers:
            setup_cli_logging()
        runner = Runner(settings)
    plan = RunPlan("backfill", since, until, parent_run_id=parent)
    try:
        with WindowLocks(runner.store).hold(since, until, plan.run_id, wait=wait):
            outcome = runner.execute(plan)
    except Terminated:
        raise  # a signal stops the backfill, not just this partition
    except Exception as e:  # one partition's failure never stops the others
        return PartitionResult(since, until, "failed", error=f"{type(e).__name__}: {e}")
    finally:
        if own:
            runner.store.dispose()
    if outcome.terminated:
        raise STOP.error(outcome.run_id, outcome.error.stage if outcome.error else None)
    c = outcome.metrics.known_counts()
    rejected = outcome.metrics.counts.rejected if "extracted" in c else None
    return PartitionResult(
        since,
        until,
        "ok" if outcome.status == "succeeded" else "failed",
        outcome.run_id,
        c.get("extracted"),
        c.get("loaded"),
        rejected,
        str(outcome.error or outcome.audit_problem or "") or None,
        c.get("outside_window"),
        outcome.metrics.lateness.late_rows if outcome.metrics.lateness else None,
        audit_incomplete=outcome.audit_problem is not None,
    )


def check_arrivals_complete(settings: Settings, parts: list[tuple[datetime, datetime]]) -> None:
    """On the arrival clock a partition reads arrivals up to its end plus ``source.window.horizon``: refuse
    the backfill, before anything runs, when the last of them may not have reached the API yet."""
    spec = WindowSpec.parse(settings.source.window)
    available = clock.now() - settings.window.settle
    for since, until in parts[-1:]:  # partitions end in order: the last reaches furthest
        spec.check_complete("backfill", since, until, available)


def run_backfill(
    settings: Settings,
    parts: list[tuple[datetime, datetime]],
    workers: int = 1,
    rerun: bool = False,
    wait: bool = False,
    kernel: SharedKernel | None = None,
    on_result: Callable[[PartitionResult], None] | None = None,
) -> list[PartitionResult]:
    """``kernel``: a started ``SharedKernel`` for the inline partitions (the caller shuts it down).
    ``on_result``: called with each partition's result as it is known (skipped ones first)."""
    report = on_result or (lambda _r: None)
    check_arrivals_complete(settings, parts)
    runner = Runner(settings, kernel=kernel)
    runner.preflight()
    parent = new_run_id("backfill")
    results: dict[tuple[datetime, datetime], PartitionResult] = {}
    done = set() if rerun else runner.store.succeeded_windows("backfill")
    todo = []
    for since, until in parts:
        if (since, until) in done:
            results[(since, until)] = PartitionResult(since, until, "skipped", error="already succeeded")
            report(results[(since, until)])
        else:
            todo.append((since, until))
    log.info("backfill %s: %d partition(s) to run, %d skipped", parent, len(todo), len(parts) - len(todo))
    workers = worker_count(workers, len(todo), settings)
    if workers == 1:
        for since, until in todo:
            results[(since, until)] = _run_partition(settings, since, until, parent, wait, runner=runner)
            log.info("partition [%s, %s): %s", iso(since), iso(until), results[(since, until)].result)
            report(results[(since, until)])
    else:
        settings = one_core_transform(settings)
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=install_in_worker) as pool:
            futures = {pool.submit(_run_partition, settings, s, u, parent, wait): (s, u) for s, u in todo}
            try:
                for fut, (s, u) in futures.items():
                    try:
                        results[(s, u)] = fut.result()
                    except Terminated:
                        raise
                    except Exception as e:  # a worker process that died
                        results[(s, u)] = PartitionResult(s, u, "failed", error=f"worker died: {e}")
                    log.info("partition [%s, %s): %s", iso(s), iso(u), results[(s, u)].result)
                    report(results[(s, u)])
            except Terminated:
                # the partitions not started are dropped; the running ones are stopped and recorded
                pool.shutdown(wait=False, cancel_futures=True)
                for worker in multiprocessing.active_children():
                    worker.terminate()
                raise
    return [results[p] for p in parts]
