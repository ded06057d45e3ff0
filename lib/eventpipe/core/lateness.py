"""Late events measured: how many rows a run inserted late, and how long after their event time they arrived.

A row is *late* when the run that inserted it is not the one its event time would have put it in:

* an incremental run (either clock): its event time lies before the previous watermark, so the run before
  could not see it (on the event clock, the rows found in the re-read ``window.overlap``);
* a run over a window of event time on the arrival clock (a backfill partition, an Airflow interval): it
  arrived at or after the window's end (found thanks to ``source.window.horizon``).

Only inserted rows count: a row seen again (updated or unchanged) was not late. Where the records carry
their arrival time (``source.window.arrival_field``), the lag ``arrival - event time`` of the late rows is
summarised as p50 / p99 / max seconds. The figures are the load stage's ``lateness`` and ``metrics.json``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..rundir import UNPARSED, read_raw_part
from ..settings import iso

if TYPE_CHECKING:  # numpy, pandas and pyarrow are imported where rows are measured: the runner and the
    # command line read a run's ``Lateness`` (``run_metrics``) and must not pay for them as they start
    import numpy as np
    import pandas as pd

BEFORE_WATERMARK = "event time before the previous watermark"
AFTER_WINDOW = "arrived at or after the window's end"
KEY_COLUMNS = ["seq", "user_id", "timestamp", "event_type"]
Key = tuple[str, int, str]  # user_id, event time in µs since the epoch, event_type


@dataclass(frozen=True)
class LateRule:
    """Which rows of a run are late: event time before ``at`` (``BEFORE_WATERMARK``) or arrival at or after
    ``at`` (``AFTER_WINDOW``, which needs the arrival field)."""

    measure: str
    at: datetime
    arrival_field: str = ""

    @property
    def needs_arrival(self) -> bool:
        return self.measure == AFTER_WINDOW


def late_rule(
    kind: str, clock: str, until: datetime, watermark: datetime | None, arrival_field: str
) -> LateRule | None:
    """The rule for a run of ``kind``; None where lateness has no meaning (a first run, a backfill on the
    event clock, a full reload, a replay) or cannot be seen (the arrival clock without an arrival field)."""
    if kind == "incremental":
        return LateRule(BEFORE_WATERMARK, watermark, arrival_field) if watermark else None
    if clock == "arrival" and kind not in ("full", "replay") and arrival_field:
        return LateRule(AFTER_WINDOW, until, arrival_field)
    return None


def _us(ts: pd.Series) -> np.ndarray:
    return ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]").astype("int64")


def clean_rows(parts: Iterable[str | Path], before: datetime | None = None) -> pd.DataFrame:
    """The key columns of the run's clean parts (``seq``, ``user_id``, ``timestamp``, ``event_type``), only
    the rows whose event time is before ``before`` when it is given (filtered as the parts are read)."""
    import pandas as pd
    import pyarrow.parquet as pq

    filters = [("timestamp", "<", pd.Timestamp(before))] if before is not None else None
    frames = [pq.read_table(p, columns=KEY_COLUMNS, filters=filters).to_pandas() for p in parts]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in KEY_COLUMNS})
    return pd.concat(frames, ignore_index=True)


def _pick(record: Any, path: tuple[str, ...]) -> Any:
    v = record
    for key in path:
        if type(v) is not dict:
            return None
        v = v.get(key)
    return v


def arrival_times(raw_parts: Iterable[str | Path], path: str, seqs: np.ndarray) -> dict[int, int]:
    """``seq`` -> arrival time (µs since the epoch) of the records ``seqs``, read at ``path`` in the raw
    records; a record whose arrival does not parse is left out."""
    from .records import parse_timestamps

    wanted = set(seqs.tolist())
    keys = tuple(path.split("."))
    found_seqs: list[int] = []
    values: list[Any] = []
    for part in raw_parts:
        items, part_seqs = read_raw_part(part)
        for item, seq in zip(items, part_seqs):
            if seq in wanted and type(item) is dict and UNPARSED not in item:
                found_seqs.append(seq)
                values.append(_pick(item, keys))
    if not values:
        return {}
    ts, reasons = parse_timestamps(values)
    us = _us(ts)
    return {s: int(u) for s, u, r in zip(found_seqs, us, reasons) if r is None}


@dataclass
class Lateness:
    """A run's late rows: how many, by which measure, and their lag where the arrival time is known."""

    measure: str
    at: str
    late_rows: int = 0
    lag_rows: int = 0  # late rows whose arrival time is known
    lag_p50_s: float | None = None
    lag_p99_s: float | None = None
    lag_max_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Lateness:
        return cls(
            str(d.get("measure") or ""),
            str(d.get("at") or ""),
            int(d.get("late_rows") or 0),
            int(d.get("lag_rows") or 0),
            d.get("lag_p50_s"),
            d.get("lag_p99_s"),
            d.get("lag_max_s"),
        )


def measure(
    rule: LateRule,
    clean_parts: Iterable[str | Path],
    raw_parts: list[Path],
    stored: Callable[[list[Key]], set[Key]],
) -> Lateness:
    """The late rows among the run's clean rows that ``stored`` (the keys already in the table, asked before
    the load) does not hold, and their lag."""
    import numpy as np
    import pandas as pd

    rows = clean_rows(clean_parts, None if rule.needs_arrival else rule.at)
    out = Lateness(rule.measure, iso(rule.at))
    if not len(rows):
        return out
    seqs = rows["seq"].to_numpy(dtype="int64")
    event_us = _us(rows["timestamp"])
    at_us = int(pd.Timestamp(rule.at).value // 1000)
    arrivals: dict[int, int] = {}
    if rule.needs_arrival:
        arrivals = arrival_times(raw_parts, rule.arrival_field, seqs)
        arrival = np.array([arrivals.get(int(s), -(2**62)) for s in seqs], dtype="int64")
        candidate = arrival >= at_us
    else:
        candidate = event_us < at_us
    idx = np.flatnonzero(candidate)
    if not len(idx):
        return out
    keys = [
        (str(u), int(t), str(e))
        for u, t, e in zip(rows["user_id"].to_numpy()[idx], event_us[idx], rows["event_type"].to_numpy()[idx])
    ]
    known = stored(keys)
    late = np.array([k not in known for k in keys], dtype=bool)
    idx = idx[late]
    out.late_rows = int(len(idx))
    if not len(idx) or not rule.arrival_field:
        return out
    if not rule.needs_arrival:
        arrivals = arrival_times(raw_parts, rule.arrival_field, seqs[idx])
    lags = [(arrivals[int(s)] - int(e)) / 1e6 for s, e in zip(seqs[idx], event_us[idx]) if int(s) in arrivals]
    out.lag_rows = len(lags)
    if lags:
        arr = np.asarray(lags)
        out.lag_p50_s = round(float(np.percentile(arr, 50)), 3)
        out.lag_p99_s = round(float(np.percentile(arr, 99)), 3)
        out.lag_max_s = round(float(arr.max()), 3)
    return out
