"""Scheduler: incremental runs on an interval or a cron expression (APScheduler), never overlapping.

Each tick runs ``run_pipeline.py run`` as a child process in its own session,
so a failed or crashed run is logged and the scheduler waits for the next tick.
SIGINT/SIGTERM stop the scheduler after the current run has finished.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from datetime import datetime, timezone
from typing import Any

from ..errors import SettingsError
from ..settings import PROJECT_ROOT, parse_duration

log = logging.getLogger(__name__)


def run_schedule(every: str | None, cron: str | None, run_args: list[str]) -> int:
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if cron:
        try:
            trigger: Any = CronTrigger.from_crontab(cron, timezone=timezone.utc)
        except ValueError as e:
            raise SettingsError(f"schedule --cron {cron!r}: {e}") from None
        first = None
    else:
        trigger = IntervalTrigger(seconds=parse_duration(every or "").total_seconds(), timezone=timezone.utc)
        first = datetime.now(timezone.utc)  # an interval schedule runs once at start, then every interval
    sched = BlockingScheduler(timezone=timezone.utc)
    state: dict[str, Any] = {"child": None, "ticks": 0}
    cmd = [sys.executable, str(PROJECT_ROOT / "run_pipeline.py"), "run", *run_args]

    def tick() -> None:
        state["ticks"] += 1
        n = state["ticks"]
        log.info("tick %d: starting an incremental run", n)
        proc = subprocess.Popen(cmd, start_new_session=True)  # our signals are not the run's
        state["child"] = proc
        rc = proc.wait()
        if rc == 0:
            log.info("tick %d: run finished (exit 0)", n)
        else:
            log.error("tick %d: run failed (exit %d); waiting for the next tick", n, rc)

    sched.add_job(
        tick,
        trigger,
        id="incremental",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        next_run_time=first,
    )

    def stop(signum: int, _frame: Any) -> None:
        log.info("%s received: stopping after the current run", signal.Signals(signum).name)
        sched.shutdown(wait=False)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    log.info("scheduler started (%s)", f"every {every}" if every else f"cron {cron!r} UTC")
    sched.start()
    child = state["child"]
    if child is not None and child.poll() is None:
        child.wait()
    log.info("scheduler stopped after %d tick(s)", state["ticks"])
    return 0
