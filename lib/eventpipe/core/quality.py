"""Quality: the data-quality rules from params, declared as a pandera schema, and the pass-rate gate.

Each check is named after the reject reason it produces, so a failed check
becomes a per-record reason and the schema itself documents the rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timezone

import pandas as pd
import pandera.pandas as pa

from ..errors import QualityGateFailed
from ..settings import QualitySettings
from .records import reason_code


def build_schema(q: QualitySettings, now: datetime | None = None) -> pa.DataFrameSchema:
    """The rules a transformed record must pass to be loaded."""
    now = now or datetime.now(timezone.utc)
    latest = pd.Timestamp(now + q.max_future)
    earliest = pd.Timestamp(q.min_timestamp)
    allowed = list(q.allowed_events)
    return pa.DataFrameSchema(
        {
            "event_type": pa.Column(
                None,
                nullable=True,
                checks=pa.Check(
                    lambda s: s.isin(allowed),
                    name="event_not_allowed",
                    ignore_na=True,
                    description="event type is in quality.allowed_events",
                ),
            ),
            "timestamp": pa.Column(
                None,
                nullable=True,
                checks=[
                    pa.Check(
                        lambda s: s >= earliest,
                        name="timestamp_before_min",
                        ignore_na=True,
                        description="not before quality.min_timestamp",
                    ),
                    pa.Check(
                        lambda s: s <= latest,
                        name="timestamp_in_future",
                        ignore_na=True,
                        description="not later than now + quality.max_future",
                    ),
                ],
            ),
        },
        strict=False,
        coerce=False,
        name="analytics_event",
    )


_DETAIL = {
    "event_not_allowed": lambda v, q, now: f"{v!r} is not in quality.allowed_events",
    "timestamp_before_min": lambda v, q, now: (
        f"{v} is before quality.min_timestamp {q.min_timestamp:%Y-%m-%d}"
    ),
    "timestamp_in_future": lambda v, q, now: (
        f"{v} is more than quality.max_future ahead of {now:%Y-%m-%dT%H:%M}Z"
    ),
}


_ORDER = {name: i for i, name in enumerate(_DETAIL)}  # the schema's checks, column by column
_NONE: list[str] = []  # shared by every passing row; never mutated


def check(df: pd.DataFrame, q: QualitySettings, now: datetime | None = None) -> list[list[str]]:
    """Every quality reason per row of ``df`` (empty list: the row passes)."""
    now = now or datetime.now(timezone.utc)
    reasons: list[list[str]] = [_NONE] * len(df)
    if df.empty:
        return reasons
    frame = df[["event_type", "timestamp"]].reset_index(drop=True)
    try:
        build_schema(q, now).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as e:
        fc = e.failure_cases
        fc = fc[fc["index"].notna()]
        for idx, name, value in zip(fc["index"].astype(int), fc["check"], fc["failure_case"]):
            name = str(name)
            detail = _DETAIL.get(name)
            if reasons[idx] is _NONE:
                reasons[idx] = []
            reasons[idx].append(f"{name}: {detail(value, q, now)}" if detail else f"{name}: {value!r}")
    for rs in reasons:  # pandera's failure cases come in no fixed order: the schema's order, always
        if len(rs) > 1:
            rs.sort(key=lambda r: _ORDER.get(reason_code(r), len(_ORDER)))
    return reasons


def pass_rate(passed: int, distinct: int) -> float:
    """Share of distinct records (extracted minus collapsed duplicates) that passed; 1.0 when none."""
    return passed / distinct if distinct else 1.0


def reason_counts(reason_lists: Iterable[list[str]]) -> Counter:
    counts: Counter = Counter()
    for rs in reason_lists:
        for r in rs:
            counts[reason_code(str(r))] += 1
    return counts


def gate(rate: float, q: QualitySettings, reasons: Counter) -> None:
    """Fail the batch when its pass rate is under ``quality.min_pass_rate``."""
    if rate < q.min_pass_rate:
        raise QualityGateFailed(rate, q.min_pass_rate, dict(reasons.most_common(5)))
