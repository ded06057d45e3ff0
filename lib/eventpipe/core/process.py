"""The chunk loop: raw parts -> clean and reject parts, with cross-chunk dedup and the quality rules.

Chunks are processed from the last to the first, remembering the keys already seen, so "the last
one in API order wins" holds across chunk boundaries in one pass with bounded memory.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..jsonio import dumps, gc_paused
from ..rundir import CLEAN_SCHEMA, REJECT_SCHEMA, UNPARSED, UNPARSED_REASON, RunDir, part_name, read_raw_part
from ..settings import QualitySettings, Settings
from ..testing.inject import checkpoint
from . import quality
from .counts import RunCounts
from .fields import FieldMap
from .records import KeySet, duplicate_mask, enrich, key_hashes, parse_items, record_hash


@dataclass(frozen=True)
class Rules:
    """What decides a record's fate: the quality settings, the instant "now" is, the field map, and the
    window ``[since, until)`` that a client-side filter keeps (None: the API's bounds are exact)."""

    quality: QualitySettings
    now: datetime
    fields: FieldMap = field(default_factory=lambda: FieldMap.parse({}))
    window: tuple[datetime, datetime] | None = None

    @classmethod
    def of(cls, settings: Settings, now: datetime, window: tuple[datetime, datetime] | None = None) -> Rules:
        """The rules the settings describe; ``window`` applies only where ``source.window.filter_field`` is set."""
        filtered = bool(settings.source.window.get("filter_field"))
        return cls(
            settings.quality, now, FieldMap.parse(settings.source.fields), window if filtered else None
        )


def raw_text(item: Any) -> str:
    """A record's text as the API sent it (an unparseable one keeps the text it came as)."""
    return item[UNPARSED] if type(item) is dict and UNPARSED in item else dumps(item)


@dataclass
class ProcessResult:
    counts: RunCounts
    pass_rate: float
    reasons: Counter = field(default_factory=Counter)
    per_hour: pd.Series = field(default_factory=lambda: pd.Series(dtype="int64"))
    seconds: float = 0.0
    settled_hashes: list[str] = field(
        default_factory=list
    )  # replay: dead letters that now pass or are superseded


def process(run: RunDir, rules: Rules, replay: bool = False) -> ProcessResult:
    """Parse, normalise, dedup (last wins, across chunks), check quality; write ``clean/`` and ``rejects/``."""
    started = time.perf_counter()
    raw_parts = run.parts("raw")
    clean_dir = run.fresh("clean")
    rejects_dir = run.fresh("rejects")
    c = RunCounts()
    reasons: Counter = Counter()
    per_hour: Counter = Counter()
    settled: list[str] = []
    seen = KeySet()  # the keys of later chunks' rows
    mapped = rules.fields.mapper()
    lo, hi = (pd.Timestamp(t) for t in rules.window) if rules.window else (None, None)
    earliest = pd.Timestamp(rules.quality.min_timestamp)
    latest = pd.Timestamp(rules.now + rules.quality.max_future)
    with gc_paused():  # millions of short-lived dicts would otherwise trigger full collections
        for i in reversed(range(len(raw_parts))):
            items, seqs = read_raw_part(raw_parts[i])
            df = parse_items(seqs, mapped(items))
            for j, x in enumerate(items):  # rare: records the source could not parse
                if type(x) is dict and UNPARSED in x:
                    df.at[j, "reasons"] = [str(x.get(UNPARSED_REASON, "record_unparseable"))]
            checkpoint("transform.chunk")
            c.extracted += len(df)
            ok = np.fromiter((not r for r in df["reasons"]), dtype=bool, count=len(df))
            outside = np.zeros(len(df), dtype=bool)
            if lo is not None:  # the API's bounds are coarser than the window: keep [since, until)
                # a record is outside when its time says so, whatever else is wrong with it; one without a
                # usable time (missing, unparseable, before min_timestamp, too far ahead) stays a dead letter
                ts = df["timestamp"]
                sane = (ts >= earliest) & (ts <= latest)
                outside = (sane & ((ts < lo) | (ts >= hi))).fillna(False).to_numpy(dtype=bool)
                ok &= ~outside
                c.outside_window += int(outside.sum())
            hashes = key_hashes(df[ok])
            superseded = duplicate_mask(hashes) | seen.seen_before(hashes)
            dup = np.zeros(len(df), dtype=bool)
            dup[np.flatnonzero(ok)] = superseded
            c.rejected_transform += int((~ok & ~outside).sum())
            c.duplicates += int(dup.sum())
            if replay:  # a superseded duplicate is settled by the copy that wins
                settled += [record_hash(raw_text(items[j])) for j in np.flatnonzero(dup)]
            keep = np.flatnonzero(~dup & ~outside)
            df = df.iloc[keep].reset_index(drop=True)
            ok = ok[keep]
            q_reasons = quality.check(df, rules.quality, rules.now)
            all_reasons = [r + qr if qr else r for r, qr in zip(df["reasons"], q_reasons)]
            passed = np.fromiter((not r for r in all_reasons), dtype=bool, count=len(df))
            c.rejected_quality += int((ok & ~passed).sum())
            c.passed += int(passed.sum())
            bad = np.flatnonzero(~passed)
            reasons.update(quality.reason_counts(all_reasons[j] for j in bad))

            clean = enrich(df[passed])
            pq.write_table(
                pa.Table.from_pandas(clean[CLEAN_SCHEMA.names], schema=CLEAN_SCHEMA, preserve_index=False),
                clean_dir / part_name(i),
            )
            per_hour.update(clean["timestamp"].dt.floor("h").value_counts().to_dict())
            if replay:
                settled += [record_hash(raw_text(items[keep[j]])) for j in np.flatnonzero(passed)]
            if len(bad):
                rej = pd.DataFrame(
                    {
                        "seq": df["seq"].to_numpy()[bad],
                        "stage": np.where(ok[bad], "quality", "transform"),
                        "reasons": [all_reasons[j] for j in bad],
                        "raw": [raw_text(items[keep[j]]) for j in bad],
                    }
                )
                pq.write_table(
                    pa.Table.from_pandas(rej, schema=REJECT_SCHEMA, preserve_index=False),
                    rejects_dir / part_name(i),
                )
            del items, df, clean
            gc.collect(1)  # the chunk's frames leave a few reference cycles; free them now, not at the end

    c.transformed = c.extracted - c.rejected_transform - c.duplicates - c.outside_window
    rate = quality.pass_rate(c.passed, c.extracted - c.duplicates - c.outside_window)
    hours = pd.Series(per_hour, dtype="int64").sort_index() if per_hour else pd.Series(dtype="int64")
    return ProcessResult(c, rate, reasons, hours, time.perf_counter() - started, settled)
