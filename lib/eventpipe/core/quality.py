"""Quality: the data-quality rules from params, declared as a pandera schema, and the pass-rate gate.

Each check is named after the reject reason it produces, so a failed check
becomes a per-record reason and the schema itself documents the rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

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


def _details(q: QualitySettings, now: datetime) -> dict[str, Callable[[Any], str]]:
    """Per check: the detail of a reason, from the failed value (the settings' parts formatted once)."""
    earliest = f"{q.min_timestamp:%Y-%m-%d}"
    ahead = f"{now:%Y-%m-%dT%H:%M}Z"
    return {
        "event_not_allowed": lambda v: f"{v!r} is not in quality.allowed_events",
        "timestamp_before_min": lambda v: f"{v} is before quality.min_timestamp {earliest}",
        "timestamp_in_future": lambda v: f"{v} is more than quality.max_future ahead of {ahead}",
    }


_NONE: list[str] = []  # shared by every passing row; never mutated


def check(df: pd.DataFrame, q: QualitySettings, now: datetime | None = None) -> list[list[str]]:
    """Every quality reason per row of ``df`` (empty list: the row passes), in the schema's order.

    The schema's checks run a column at a time, each through pandera's own ``Check`` call (which drops
    the nulls an ``ignore_na`` check skips), and only the failed rows build reasons. ``validate(lazy=True)``
    ran the same checks, then made a failure-case frame of every failure (100k rows, 68 % failing: 0.85
    CPU s, now 0.31 s; ``bench/transform_part.py``); its reasons are the reference of
    ``tests/unit/core/test_quality_differential.py``. The columns are nullable and untyped
    (``build_schema``), so no rule but the checks can fail a row.
    """
    now = now or datetime.now(timezone.utc)
    reasons: list[list[str]] = [_NONE] * len(df)
    if df.empty:
        return reasons
    schema = build_schema(q, now)
    frame = df[list(schema.columns)].reset_index(drop=True)  # the failure cases' labels are row numbers
    details = _details(q, now)
    for column, col in schema.columns.items():
        for rule in col.checks:
            prefix, detail = f"{rule.name}: ", details.get(rule.name, repr)
            for idx, value in _failures(rule, frame, column):
                if reasons[idx] is _NONE:
                    reasons[idx] = []
                reasons[idx].append(prefix + detail(value))
    return reasons


def _failures(rule: pa.Check, frame: pd.DataFrame, column: str) -> Iterable[tuple[int, Any]]:
    """(row, value) of each row whose ``column`` fails ``rule``, as pandera's column backend runs it.

    A check that cannot compare the column (naive or text timestamps) would fail no row under
    ``validate``, which reports such an error without rows: every row would pass unseen. The transform
    always hands over UTC timestamps and text event types, so this is a program error and stops the stage.
    """
    try:
        result = rule(frame, column)
    except Exception as e:
        raise QualityRuleError(str(rule.name), column, frame[column].dtype, e) from e
    if result.check_passed:
        return ()
    if result.failure_cases is None:  # an answer for the column as a whole, not row by row
        raise QualityRuleError(str(rule.name), column, frame[column].dtype, "no answer per row")
    cases = result.failure_cases
    return zip(cases.index, cases)


class QualityRuleError(TypeError):
    """A quality check that could not judge a column row by row (a program error, never a record's)."""

    def __init__(self, rule: str, column: str, dtype: object, cause: object) -> None:
        super().__init__(
            f"quality check {rule} cannot judge column {column!r} ({dtype}) row by row: {cause}; "
            "the transform must hand over UTC timestamps and text event types"
        )


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
