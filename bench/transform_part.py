"""One raw part through the transform, in this process: CPU seconds of ``quality.check`` and ``process.prepare``.

    .venv/bin/python bench/transform_part.py --events 100000 [--repeat 3] [--profile]

The part holds the demo API's pages (1,000 items each, its dirty data) for 24 hours of event time, "now"
just after them. Printed per 100k records, medians of ``--repeat`` (after one warm-up pass): the CPU
seconds of ``prepare`` (read the raw part, record rules, window, dedup, quality, write the clean and reject
files), of ``quality.check`` on the part's parsed frame, and of ``quality.check`` on a frame where most rows
fail (the cost of a check grows with its failed rows). ``--profile`` prints ``prepare``'s top functions
under cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from eventpipe.core import process, quality
from eventpipe.demo.data import _generate_hour
from eventpipe.rundir import RAW_SCHEMA, read_raw_part
from eventpipe.settings import QualitySettings

FIRST_HOUR = 473000  # hours since the epoch (2023-12-17T08:00Z)


def write_part(events: int, path: Path) -> int:
    """The demo's pages for 24 hours of ``events // 24`` events each, as one raw part; the items written."""
    bodies = [g.body for h in range(24) for g in _generate_hour(7, events // 24, 0.02, 0.02, FIRST_HOUR + h)]
    pages = [bodies[i : i + 1000] for i in range(0, len(bodies), 1000)]
    pq.write_table(
        pa.Table.from_pydict(
            {
                "page": list(range(len(pages))),
                "first_seq": list(range(0, len(bodies), 1000)),
                "n": [len(p) for p in pages],
                "body": [b"[" + b",".join(p) + b"]" for p in pages],
            },
            schema=RAW_SCHEMA,
        ),
        path,
        compression="none",  # as the extract writes its raw parts
        use_dictionary=False,
    )
    return len(bodies)


def failing_frame(n: int, now: datetime) -> pd.DataFrame:
    """Event types and timestamps of which ~68 % fail a check (event not allowed, time too early or late)."""
    rng = np.random.default_rng(1)
    events = np.array(["click", "page_view", "scroll", None], dtype=object)[rng.integers(0, 4, n)]
    lo, hi = int(now.timestamp()) - 10 * 365 * 86400, int(now.timestamp()) + 86400
    ts = pd.Series(pd.to_datetime(rng.integers(lo, hi, n), unit="s", utc=True))
    ts[rng.random(n) < 0.05] = pd.NaT
    return pd.DataFrame({"event_type": events, "timestamp": ts})


def cpu_per_100k(f: Callable[[], object], rows: int, repeat: int) -> list[float]:
    f()  # warm-up: imports, pandera's backends
    runs = []
    for _ in range(repeat):
        start = time.process_time()
        f()
        runs.append((time.process_time() - start) * 100_000 / rows)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    now = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(hours=FIRST_HOUR + 24)
    rules = process.Rules(QualitySettings(), now)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.parquet"
        n = write_part(a.events, raw)
        items, seqs = read_raw_part(raw)
        parsed = process.parse_records(items, seqs, rules)
        failing = failing_frame(n, now)
        passes = 0

        def prepare() -> process.Prepared:
            nonlocal passes
            passes += 1
            clean, rejects = (Path(tmp) / f"{kind}-{passes}.parquet" for kind in ("clean", "rejects"))
            return process.prepare(0, raw, clean, rejects, rules, False)

        figures = {
            "prepare": cpu_per_100k(prepare, n, a.repeat),
            "quality.check, the part": cpu_per_100k(
                lambda: quality.check(parsed, rules.quality, now), n, a.repeat
            ),
            "quality.check, most rows failing": cpu_per_100k(
                lambda: quality.check(failing, rules.quality, now), n, a.repeat
            ),
        }
        print(f"{n:,} records; CPU s per 100k records, median of {a.repeat} (runs)")
        for name, runs in figures.items():
            print(f"  {name:34} {statistics.median(runs):.3f}  ({', '.join(f'{r:.3f}' for r in runs)})")
        if a.profile:
            prof = cProfile.Profile()
            prof.runcall(prepare)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
