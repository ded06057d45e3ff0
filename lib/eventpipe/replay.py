"""Replay: pending dead letters go through the transform/quality and load notebooks again.

Those that now pass are loaded and marked ``replayed``; the rest stay
``pending`` with their new reasons and one more attempt. The pass-rate gate
does not apply: a replay batch is made of records that failed before.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import QualityGateFailed
from .runner import RunPlan, Runner
from .settings import Settings
from .source import write_raw_items
from .stages import StageContext, transform_quality
from .store import as_utc

NO_GATE = "quality.min_pass_rate=0"


def _write_raw(rows: list[dict[str, Any]], run_dir: Path, items_field: str) -> None:
    write_raw_items([r["raw"].encode("utf-8", "surrogatepass") for r in rows], run_dir / "raw" / "part-00000.parquet",
                    items_field)


def replay_dead_letters(settings: Settings, dry_run: bool = False, wait: bool = False, out: Any = None) -> int:
    runner = Runner(settings)
    runner.preflight()
    store = runner.store
    pending = store.pending_dead_letters()
    say = out.print if out is not None else print
    if not pending:
        say("no pending dead letters")
        return 0
    since = min(as_utc(r["first_seen"]) for r in pending)
    until = datetime.now(timezone.utc)
    if dry_run:
        with tempfile.TemporaryDirectory() as tmp:
            _write_raw(pending, Path(tmp), settings.api.items_field)
            ctx = StageContext(settings, "dry-run", since, until, Path(tmp), kind="replay")
            try:
                summary = transform_quality(ctx, replay=True)
                metrics = summary.metrics
            except QualityGateFailed:
                metrics = json.loads(ctx.manifest("transform_quality").read_text())
        say(f"dry run: {metrics['passed']} of {len(pending)} pending dead letters would pass now "
            f"({metrics['duplicates']} superseded duplicates); nothing was written")
        for reason, n in metrics["reasons"].items():
            say(f"  still failing: {reason} {n}")
        return 0
    with store.run_lock(wait=wait):
        store.mark_interrupted()
        plan = RunPlan("replay", since, until, stages=("transform_quality", "load"), extra_overrides=(NO_GATE,))
        _write_raw(pending, runner.runs_dir / plan.run_id, settings.api.items_field)
        outcome = runner.execute(plan)
    from .cli import _print_outcome

    _print_outcome(outcome)
    return 0 if outcome.status == "succeeded" else 1
