"""Replay: pending dead letters go through the transform/quality and load notebooks again.

Those that now pass are loaded and marked ``replayed``; the rest stay ``pending`` with their new
reasons and one more attempt. The pass-rate gate does not apply: a replay batch is made of records
that failed before. A dry run applies today's rules in-process (``core.process``) and writes nothing.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import clock
from ..core.process import Rules, process
from ..rundir import RunDir, part_name, write_raw_items
from ..settings import Settings
from ..storage.lock import WindowLocks
from ..storage.tables import as_utc
from .runner import Runner, RunOutcome, RunPlan, new_run_id

NO_GATE = "quality.min_pass_rate=0"


@dataclass(frozen=True)
class DryRun:
    pending: int
    would_pass: int
    superseded: int
    still_failing: dict[str, int]


def _write_raw(rows: list[dict[str, Any]], run_dir: Path) -> None:
    write_raw_items([r["raw"] for r in rows], run_dir / "raw" / part_name(0))


def dry_run(settings: Settings) -> DryRun:
    """What a replay would make of the pending dead letters under today's rules; nothing is written."""
    runner = Runner(settings)
    runner.preflight()
    pending = runner.store.pending_dead_letters()
    if not pending:
        return DryRun(0, 0, 0, {})
    with tempfile.TemporaryDirectory() as tmp:
        _write_raw(pending, Path(tmp))
        result = process(RunDir(Path(tmp)), Rules.of(settings, clock.now()), replay=True)
    return DryRun(
        len(pending), result.counts.passed, result.counts.duplicates, dict(result.reasons.most_common())
    )


def replay(settings: Settings, wait: bool = False) -> RunOutcome | None:
    """Replay the pending dead letters as one run; None when there are none.

    The pending list is read only once the run lock is held, so two replays never load the same records.
    """
    runner = Runner(settings)
    runner.preflight()
    store = runner.store
    run_id = new_run_id("replay")
    with WindowLocks(store).hold_everything(run_id, wait=wait):
        pending = store.pending_dead_letters()
        if not pending:
            return None
        since = min(as_utc(r["first_seen"]) for r in pending)
        plan = RunPlan(
            "replay",
            since,
            datetime.now(timezone.utc),
            stages=("transform_quality", "load"),
            extra_overrides=(NO_GATE,),
            run_id=run_id,
        )
        _write_raw(pending, runner.runs_dir / plan.run_id)
        return runner.execute(plan)
