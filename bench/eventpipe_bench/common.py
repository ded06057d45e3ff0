"""What every part of the benchmark shares: where things are, the bench window's constants, small helpers."""

from __future__ import annotations

import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / "bench"
ENTRY = BENCH_DIR / "run.py"  # also the child processes' entry (``run.py _direct``, ``run.py _summary``)
PY = sys.executable
STAGES = ("extract", "transform_quality", "load")
WINDOW_START = datetime(2024, 5, 1, tzinfo=timezone.utc)  # in the past: the live demo API serves it whole
DEMO_START = "2024-01-01"
DEMO_DIRTY, DEMO_DUP = 0.02, 0.02  # the demo-api defaults
API_KEY = "demo-key"


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def rate(n: float | None, seconds: float | None) -> float | None:
    return n / seconds if n is not None and seconds else None


def say(msg: str) -> None:
    """A progress line on stderr (stdout carries the table)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def work_s(stage_metrics: dict) -> float:
    """A stage's own seconds: its ``seconds``, and for a load whose rows were copied during the transform
    (``storage.early_load``) the seconds that copy took too, so the load is measured against raw ``COPY``
    whichever stage its ``COPY`` ran in."""
    return float(stage_metrics["seconds"]) + float(stage_metrics.get("early_copy_s") or 0.0)
