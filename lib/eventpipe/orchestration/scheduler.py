"""Scheduler: incremental runs on an interval or a cron expression (APScheduler), one job per pipeline.

Each pipeline is a job on its own trigger (``schedule --all``: each one's ``schedule.every`` or
``schedule.cron``). A tick runs ``run_pipeline.py run`` as a child process in its own session, so a failed or
crashed run is logged and that pipeline waits for its next tick. A pipeline's job never runs twice at once
(``max_instances=1``, missed ticks coalesced; its window locks stand behind that), while different pipelines'
jobs run side by side, each in a thread of its own that waits for its child. SIGINT/SIGTERM stop the
scheduler after the runs under way have finished.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..errors import SettingsError
from ..settings import PROJECT_ROOT, parse_duration

log = logging.getLogger(__name__)
MIN_EVERY_S = 1.0  # an interval below this is a typo (1ms ran back-to-back runs)


@dataclass(frozen=True)
class Schedule:
    """One pipeline's job: when it runs (``every`` or ``cron``) and the arguments of its ``run``."""

    pipeline: str
    every: str = ""
    cron: str = ""
    run_args: list[str] = field(default_factory=list)
    from_cli: bool = False  # --every/--cron, else the pipeline's schedule.every/schedule.cron

    @property
    def when(self) -> str:
        return f"every {self.every}" if self.every else f"cron {self.cron!r} UTC"

    def _named(self, key: str) -> str:
        return f"pipeline {self.pipeline}: " + (f"--{key}" if self.from_cli else f"schedule.{key}")

    def trigger(self) -> tuple[Any, datetime | None]:
        """The APScheduler trigger and the first run time (an interval runs once at start, then every
        interval; a cron waits for its first match); one ``SettingsError`` line for a bad one."""
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        if self.cron:
            try:
                return CronTrigger.from_crontab(self.cron, timezone=timezone.utc), None
            except ValueError as e:
                raise SettingsError(f"{self._named('cron')} {self.cron!r}: {e}") from None
        try:
            seconds = parse_duration(self.every).total_seconds()
        except ValueError as e:
            raise SettingsError(f"{self._named('every')}: {e}") from None
        if seconds < MIN_EVERY_S:
            raise SettingsError(
                f"{self._named('every')} {self.every!r} is too short: "
                f"the interval must be at least {MIN_EVERY_S:g}s"
            )
        return IntervalTrigger(seconds=seconds, timezone=timezone.utc), datetime.now(timezone.utc)


def run_schedule(schedules: list[Schedule]) -> int:
    """Run every schedule until SIGINT/SIGTERM; the triggers are all checked before the first tick."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.blocking import BlockingScheduler

    triggers = [s.trigger() for s in schedules]
    # a thread per pipeline: one pipeline's long run never holds another's tick back
    sched = BlockingScheduler(
        timezone=timezone.utc, executors={"default": ThreadPoolExecutor(max(1, len(schedules)))}
    )
    lock = threading.Lock()
    children: dict[str, subprocess.Popen[bytes]] = {}
    ticks: dict[str, int] = {s.pipeline: 0 for s in schedules}
    stopping = threading.Event()

    def tick(s: Schedule) -> None:
        with lock:
            if stopping.is_set():
                return
            ticks[s.pipeline] += 1
            n = ticks[s.pipeline]
            log.info("pipeline %s tick %d: starting an incremental run", s.pipeline, n)
            cmd = [sys.executable, str(PROJECT_ROOT / "run_pipeline.py"), "run", *s.run_args]
            proc = subprocess.Popen(cmd, start_new_session=True)  # our signals are not the run's
            children[s.pipeline] = proc
        rc = proc.wait()
        if rc == 0:
            log.info("pipeline %s tick %d: run finished (exit 0)", s.pipeline, n)
        else:
            log.error(
                "pipeline %s tick %d: run failed (exit %d); waiting for its next tick", s.pipeline, n, rc
            )

    for s, (trigger, first) in zip(schedules, triggers):
        sched.add_job(
            tick,
            trigger,
            args=(s,),
            id=f"pipeline-{s.pipeline}",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=first,
        )

    def stop(signum: int, _frame: Any) -> None:
        log.info("%s received: stopping after the current runs", signal.Signals(signum).name)
        stopping.set()
        sched.shutdown(wait=False)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for s in schedules:
        log.info("scheduler: pipeline %s %s", s.pipeline, s.when)
    log.info("scheduler started (%d pipeline(s))", len(schedules))
    sched.start()
    with lock:
        running = [c for c in children.values() if c.poll() is None]
    for child in running:
        child.wait()
    log.info(
        "scheduler stopped after %s",
        ", ".join(f"{n} tick(s) of {name}" for name, n in ticks.items()),
    )
    return 0
