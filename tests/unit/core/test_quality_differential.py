"""``quality.check`` (the schema's checks run a column at a time) against the pandera path it replaced.

The reference is the former ``check``, kept here as it was: ``validate(lazy=True)`` on the schema, its
failure cases turned into reasons by their own copy of the detail texts, each row's list sorted into the
schema's order. Hypothesis generates frames of event types and timestamps on both sides of every bound
(nulls of every kind, nanoseconds, object columns, any index) and the settings (a bound may be past the
other): both must give every row the same reasons, in order. Hand-made frames add the columns a check
cannot compare (naive or text timestamps): there pandera reports the check's error without rows, and
``check`` stops instead of letting every row pass.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventpipe.core.quality import QualityRuleError, build_schema, check
from eventpipe.core.records import reason_code
from eventpipe.settings import QualitySettings

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
_DETAIL = {
    "event_not_allowed": lambda v, q, now: f"{v!r} is not in quality.allowed_events",
    "timestamp_before_min": lambda v, q, now: (
        f"{v} is before quality.min_timestamp {q.min_timestamp:%Y-%m-%d}"
    ),
    "timestamp_in_future": lambda v, q, now: (
        f"{v} is more than quality.max_future ahead of {now:%Y-%m-%dT%H:%M}Z"
    ),
}
_ORDER = {name: i for i, name in enumerate(_DETAIL)}


def pandera_check(df: pd.DataFrame, q: QualitySettings, now: datetime) -> list[list[str]]:
    """The former ``quality.check``: pandera's ``validate(lazy=True)`` and its failure cases."""
    reasons: list[list[str]] = [[] for _ in range(len(df))]
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
            reasons[idx].append(f"{name}: {detail(value, q, now)}" if detail else f"{name}: {value!r}")
    for rs in reasons:
        rs.sort(key=lambda r: _ORDER.get(reason_code(r), len(_ORDER)))
    return reasons


def assert_same(df: pd.DataFrame, q: QualitySettings = QualitySettings(), now: datetime = NOW) -> None:
    assert check(df, q, now) == pandera_check(df, q, now)


_MIN = datetime(2020, 1, 1, tzinfo=timezone.utc)
_events = st.one_of(
    st.sampled_from(["click", "page_view", "purchase", "scroll", "", "Click", " click", "sign_up"]),
    st.sampled_from([None, np.nan, pd.NA]),
    st.text(max_size=4),
)


@st.composite
def _instants(draw: st.DrawFn, latest: pd.Timestamp) -> object:
    """A timestamp near a bound (within a nanosecond or a day of it), anywhere in between, or a null."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.sampled_from([None, pd.NaT, np.nan]))
    if kind == 1:
        return pd.Timestamp(draw(st.datetimes(datetime(2015, 1, 1), datetime(2030, 1, 1))), tz="UTC")
    bound = pd.Timestamp(_MIN) if kind in (2, 3) else latest
    step = pd.Timedelta(1, "ns") if kind in (2, 4) else pd.Timedelta(days=1)
    return bound + draw(st.integers(-3, 3)) * step


@st.composite
def _case(draw: st.DrawFn) -> tuple[pd.DataFrame, QualitySettings]:
    q = QualitySettings(
        allowed_events=tuple(
            draw(st.lists(st.sampled_from(["click", "page_view", "purchase", ""]), max_size=3))
        ),
        min_timestamp=_MIN,
        max_future=draw(st.sampled_from([timedelta(hours=1), timedelta(0), -timedelta(days=2000)])),
    )
    latest = pd.Timestamp(NOW + q.max_future)
    n = draw(st.integers(0, 25))
    events = draw(st.lists(_events, min_size=n, max_size=n))
    stamps = draw(st.lists(_instants(latest), min_size=n, max_size=n))
    typed = draw(st.booleans())  # datetime64[ns, UTC] as the transform makes it, or objects
    df = pd.DataFrame(
        {
            "seq": range(n),
            "event_type": pd.Series(events, dtype=object),
            "timestamp": pd.Series(stamps, dtype="datetime64[ns, UTC]" if typed else object),
        }
    )
    if draw(st.booleans()):  # the rows a caller kept: labels that are not row numbers
        df.index = draw(st.permutations(range(n))) if draw(st.booleans()) else [7] * n
    return df, q


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_case())
def test_check_equals_pandera_validate(case):
    df, q = case
    assert_same(df, q)


@pytest.mark.parametrize(
    "timestamps",
    [
        pd.Series([pd.Timestamp("2024-05-01T10:00"), pd.Timestamp("2019-05-01T10:00")]),  # naive
        pd.Series(["2024-05-01T10:00:00Z", "yesterday"], dtype=object),
        pd.Series([pd.Timestamp("2019-05-01", tz="UTC"), "2024-05-01"], dtype=object),
        pd.Series([1714557600, 0]),
        pd.Series([None, None]),
        pd.Series([pd.NaT, pd.NaT], dtype="datetime64[ns, UTC]"),
        pd.Series([pd.Timestamp("2019-05-01", tz="UTC"), pd.Timestamp("2099-05-01", tz="Asia/Tokyo")]),
    ],
)
@pytest.mark.parametrize(
    "events",
    [["click", "scroll"], [None, None], [1, 2], [1.5, np.nan], ["scroll", pd.NA], [True, False]],
)
def test_check_equals_pandera_validate_or_stops_where_validate_judged_no_row(timestamps, events):
    """Where a check cannot compare a column, ``validate`` reports it without rows (every row would pass
    unseen): ``check`` stops with the check and the column named instead."""
    df = pd.DataFrame({"event_type": events, "timestamp": timestamps})
    if _rowless_failure(df):
        with pytest.raises(QualityRuleError, match="cannot judge column"):
            check(df, QualitySettings(), NOW)
    else:
        assert_same(df)


def _rowless_failure(df: pd.DataFrame) -> bool:
    """pandera's ``validate`` found a check's error that names no row."""
    try:
        build_schema(QualitySettings(), NOW).validate(df, lazy=True)
    except pa.errors.SchemaErrors as e:
        return bool(e.failure_cases["index"].isna().any())
    return False


def test_check_equals_pandera_validate_on_the_edges():
    """No rows, every row passing, every row failing both checks (of 300: pandera's order is not stable)."""
    empty = pd.DataFrame(
        {"event_type": pd.Series([], dtype=object), "timestamp": pd.Series([], dtype="datetime64[ns, UTC]")}
    )
    good = {"event_type": "click", "timestamp": pd.Timestamp("2024-05-01T10:00:00Z")}
    bad = {"event_type": "scroll", "timestamp": pd.Timestamp("2024-06-01T13:00:00.000000001Z")}
    for df in (empty, pd.DataFrame([good] * 3), pd.DataFrame([good] + [bad] * 300)):
        assert_same(df)
    assert check(pd.DataFrame([bad]), QualitySettings(), NOW) == [
        [
            "event_not_allowed: 'scroll' is not in quality.allowed_events",
            "timestamp_in_future: 2024-06-01 13:00:00.000000001+00:00 is more than quality.max_future ahead "
            "of 2024-06-01T12:00Z",
        ]
    ]
