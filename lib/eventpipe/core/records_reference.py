"""The record rules written per record: the reference the column-wise rules in ``records`` must equal.

This is the implementation ``records.parse_items`` replaced, kept as an oracle (the rules for one value,
``records._user_id`` and the like, are shared with it; the column-wise paths are what it checks): the unit
tests run both on generated dirty records and require identical frames (rows, values, reasons and
their order). Nothing in the pipeline calls it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# the rules for one value are shared: what the reference keeps is applying them record by record
from .records import (
    _EVENT_SEP,
    _MAX_EPOCH_US,
    _MISSING,
    _properties,
    _session_id,
    _user_id,
    _with_offset,
)


def parse_timestamps(values: list[Any]) -> tuple[pd.Series, list[str | None]]:
    """Mixed ISO text / epoch numbers -> UTC timestamps (µs precision) and a reason per failure."""
    n = len(values)
    out = np.full(n, np.datetime64("NaT", "ns"), dtype="datetime64[ns]")
    reasons: list[str | None] = [None] * n
    str_idx, num_idx, num_vals = [], [], []
    for i, v in enumerate(values):
        t = type(v)
        if t is str:
            str_idx.append(i)
        elif t is int or t is float:
            num_idx.append(i)
            num_vals.append(float(v))
        elif v is None or v is _MISSING:
            reasons[i] = "timestamp_missing: absent or null"
        else:
            reasons[i] = (
                f"timestamp_unparseable: {type(v).__name__} is neither ISO 8601 text nor epoch number"
            )
    if num_idx:
        arr = np.asarray(num_vals, dtype="float64")
        with np.errstate(invalid="ignore", over="ignore"):
            us = np.where(np.abs(arr) >= 1e11, arr * 1e3, arr * 1e6)  # >= 1e11: milliseconds
            ok = np.isfinite(us) & (np.abs(us) < _MAX_EPOCH_US)
        idx = np.asarray(num_idx)
        out[idx[ok]] = (np.round(us[ok]).astype("int64") * 1000).astype("datetime64[ns]")
        for i in idx[~ok]:
            reasons[i] = f"timestamp_unparseable: epoch {values[i]!r} is out of range"
    if str_idx:
        # no offset means UTC; normalise first, because pandas applies one element's offset to naive ones
        fixed = pd.Series([_with_offset(values[i]) for i in str_idx], dtype=object)
        parsed = pd.to_datetime(fixed, format="ISO8601", utc=True, errors="coerce")
        idx = np.asarray(str_idx)
        good = parsed.notna().to_numpy()
        out[idx[good]] = parsed[good].dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
        for j in np.flatnonzero(~good):
            reasons[str_idx[j]] = f"timestamp_unparseable: {values[str_idx[j]]!r:.60} is not ISO 8601"
    ts = pd.Series(out, dtype="datetime64[ns]").dt.floor("us").dt.tz_localize("UTC")
    return ts, reasons


_NO_REASONS: list[str] = []  # shared by every clean row; never mutated
_FIELD_NAMES = ("user_id", "event", "timestamp", "properties", "session_id")
_NOT_OBJECT = (_MISSING,) * len(_FIELD_NAMES)


def _FIELDS_GETTER(item: dict) -> tuple[Any, ...]:
    g = item.get
    return (
        g("user_id", _MISSING),
        g("event", _MISSING),
        g("timestamp", _MISSING),
        g("properties", _MISSING),
        g("session_id", _MISSING),
    )


def _flagged(reasons: tuple[str | None, ...] | list[str | None]) -> list[int]:
    """Indices whose reason is set."""
    return [i for i, r in enumerate(reasons) if r is not None]


def _event_type(v: Any, cache: dict[str, str | None]) -> str | None:
    if type(v) is not str:
        return None
    if v not in cache:  # few distinct spellings: trim, lower, runs of spaces/hyphens -> "_", once each
        norm = _EVENT_SEP.sub("_", v.strip().lower())
        cache[v] = norm or None
    return cache[v]


def parse_items(seq: np.ndarray | list[int], items: list[Any]) -> pd.DataFrame:
    """Parsed API items -> one row per item with typed columns and its transform reasons (a list)."""
    n = len(items)
    get = _FIELDS_GETTER
    # one pass pulls the five fields of every object (an item that is not an object gets none)
    rows = [get(x) if type(x) is dict else _NOT_OBJECT for x in items]
    user_raw, ev_raw, ts_raw, prop_raw, sess_raw = zip(*rows) if n else ((), (), (), (), ())
    users, user_r = zip(*map(_user_id, user_raw)) if n else ((), ())
    props, prop_r = zip(*map(_properties, prop_raw)) if n else ((), ())
    sess, sess_r = zip(*map(_session_id, sess_raw)) if n else ((), ())
    ts, ts_r = parse_timestamps(list(ts_raw))
    cache: dict[str, str | None] = {}
    events = [_event_type(v, cache) for v in ev_raw]

    # reasons are rare: find the rows that have any, then build their lists
    bad = {i for col in (user_r, ts_r, prop_r, sess_r) for i in _flagged(col)}
    bad.update(i for i, e in enumerate(events) if e is None)
    reasons: list[list[str]] = [_NO_REASONS] * n
    for i in bad:
        if type(items[i]) is not dict:
            reasons[i] = [f"record_not_object: item is a {type(items[i]).__name__}"]
            continue
        v = ev_raw[i]
        ev_reason = (
            None
            if events[i] is not None
            else (
                "event_missing: absent, null or empty"
                if v is _MISSING or v is None or type(v) is str
                else f"event_invalid: {type(v).__name__} is not text"
            )
        )
        reasons[i] = [x for x in (user_r[i], ev_reason, ts_r[i], prop_r[i], sess_r[i]) if x]

    df = pd.DataFrame(
        {
            "seq": pd.Series(seq, dtype="int64"),
            "user_id": pd.Series(users, dtype=object),
            "event_type": pd.Series(events, dtype=object),
            "timestamp": ts,
            "properties": pd.Series(props, dtype=object),
            "session_id": pd.Series(sess, dtype=object),
        }
    )
    df["reasons"] = reasons
    return df
