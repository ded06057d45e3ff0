"""Records: raw API items -> typed, normalised rows, by the record rules of DESIGN.md.

Parsing is column-wise: one pass pulls each field out of the items, then
pandas normalises and parses whole columns. Every record that breaks a rule
keeps its raw form and every reason (``code: detail``). Duplicates on
``(user_id, timestamp, event_type)`` collapse to the last one in API order,
across chunk boundaries too (see ``duplicate_mask``).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np
import pandas as pd

from ..jsonio import dumps, loads

KEY = ["user_id", "timestamp", "event_type"]
_MISSING = object()
_ISO_DATE = re.compile(r"\d{4}-?\d{2}-?\d{2}(?:[T ].+)?")  # fullmatch: ``$`` would allow a trailing newline
_OFFSET_RE = r"(?:Z|[+-]\d{2}(?::?\d{2})?)\Z"
_MAX_EPOCH_US = 9.0e15  # pandas' nanosecond range ends in 2262
_EVENT_SEP = re.compile(r"[\s\-]+")
_OFFSET = re.compile(_OFFSET_RE)


def reason_code(reason: str) -> str:
    """``"code: detail"`` -> ``"code"``: reasons are counted by their code."""
    return reason.split(":", 1)[0]


def record_hash(raw: str) -> str:
    """A dead letter's identity: the SHA-256 of its raw text (the same bad record is stored once)."""
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # an escaped NUL, not a literal backslash-u0000


def _user_id(v: Any) -> tuple[str | None, str | None]:
    t = type(v)
    if t is str:
        s = v.strip()
        if not s:
            return None, "user_id_missing: empty text"
        if "\x00" in s:
            return None, "user_id_invalid: contains a NUL character"
        return s, None
    if t is int:
        return str(v), None
    if t is float:
        return (repr(v), None) if np.isfinite(v) else (None, "user_id_invalid: not a finite number")
    if v is None or v is _MISSING:
        return None, "user_id_missing: absent or null"
    return None, f"user_id_invalid: {type(v).__name__} is not text or a number"


def _properties(v: Any) -> tuple[str | None, str | None]:
    if v is None or v is _MISSING:
        return "{}", None
    if type(v) is str:
        try:
            v = loads(v)
        except (ValueError, RecursionError):
            return None, "properties_invalid: text that is not JSON"
        if type(v) is not dict:
            return None, f"properties_invalid: JSON text of a {type(v).__name__}, not an object"
    elif type(v) is not dict:
        return None, f"properties_invalid: {type(v).__name__} is not an object"
    try:
        text = dumps(v)
    except RecursionError:
        return None, "properties_invalid: nested too deeply to store"
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        return None, "properties_invalid: contains a NUL character (\\u0000), which jsonb cannot store"
    return text, None


def _session_id(v: Any) -> tuple[str | None, str | None]:
    if v is None or v is _MISSING:
        return None, None
    if type(v) is str:
        return (v, None) if "\x00" not in v else (None, "session_id_invalid: contains a NUL character")
    return None, f"session_id_invalid: {type(v).__name__} is not text or null"


def _with_offset(text: str) -> str | None:
    """ISO 8601 text with an explicit offset (``+00:00`` added when it has none), or None if not ISO-shaped."""
    s = text.strip().upper()
    if not _ISO_DATE.fullmatch(s):
        return None
    sep = s.find("T")
    if sep < 0:
        sep = s.find(" ")
    if sep < 0:
        return s + "T00:00:00+00:00"
    return s if _OFFSET.search(s, sep + 1) else s + "+00:00"


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


def parse_chunk(seq: np.ndarray | list[int], raw: list[bytes]) -> pd.DataFrame:
    """Serialised items -> ``parse_items`` plus each item's raw text (for callers holding JSON text)."""
    df = parse_items(seq, [loads(b) for b in raw])
    df["raw"] = [b.decode("utf-8", "replace") if isinstance(b, bytes) else b for b in raw]
    return df


def enrich(df: pd.DataFrame) -> pd.DataFrame:
    """Columns derived from the event time: ``event_date`` (UTC date) and ``event_hour``."""
    out = df.copy()
    out["event_date"] = out["timestamp"].dt.date
    out["event_hour"] = out["timestamp"].dt.hour.astype("Int16")
    return out


def key_hashes(df: pd.DataFrame) -> np.ndarray:
    """A 128-bit hash of the natural key per row (two independent 64-bit halves)."""
    keys = df[KEY]
    h1 = pd.util.hash_pandas_object(keys, index=False, hash_key="eventpipe-key-01").to_numpy()
    h2 = pd.util.hash_pandas_object(keys, index=False, hash_key="eventpipe-key-02").to_numpy()
    return np.stack([h1, h2], axis=1)


class KeySet:
    """The keys of the rows already seen (later in API order), at 12 bytes a key.

    A key is the first 96 bits of its ``key_hashes`` hash (all 64 of the first half, the low 32 of the
    second): the chance that two different keys of a 100M-event window share them is ~6e-14. A Python
    set of 16-byte ``bytes`` cost ~80 bytes a key (400 MB at 5M events); here the halves sit in sorted
    ``uint64`` / ``uint32`` arrays, split into 64 buckets by their top bits so adding a chunk copies one
    bucket at a time (the transient copy stays ~1/64 of the set).
    """

    BITS = 6
    LOW = np.uint64(0xFFFFFFFF)

    def __init__(self) -> None:
        n = 1 << self.BITS
        self._hi = [np.empty(0, dtype=np.uint64) for _ in range(n)]
        self._lo = [np.empty(0, dtype=np.uint32) for _ in range(n)]

    def __len__(self) -> int:
        return sum(len(h) for h in self._hi)

    @property
    def nbytes(self) -> int:
        return sum(h.nbytes + lo.nbytes for h, lo in zip(self._hi, self._lo))

    def seen_before(self, hashes: np.ndarray) -> np.ndarray:
        """True for each row of ``key_hashes`` output whose key is in the set; then add the batch's keys."""
        n = len(hashes)
        found = np.zeros(n, dtype=bool)
        if n == 0:
            return found
        hi = hashes[:, 0].astype(np.uint64)
        lo = (hashes[:, 1].astype(np.uint64) & self.LOW).astype(np.uint32)
        order = np.lexsort((lo, hi))
        hi, lo = hi[order], lo[order]
        first = np.ones(n, dtype=bool)  # the first of each run of equal keys in the batch
        first[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
        bucket = (hi >> np.uint64(64 - self.BITS)).astype(np.intp)
        bounds = np.searchsorted(bucket, np.arange(len(self._hi) + 1))
        found_sorted = np.zeros(n, dtype=bool)
        for b in np.flatnonzero(np.diff(bounds)):
            s, e = bounds[b], bounds[b + 1]
            H, L = self._hi[b], self._lo[b]
            qh, ql = hi[s:e], lo[s:e]
            at = np.searchsorted(H, qh)  # where each key is, or would go
            if len(H):
                inside = np.minimum(at, len(H) - 1)
                same_hi = H[inside] == qh
                hit = same_hi & (L[inside] == ql)
                run = same_hi & ~hit & (inside + 1 < len(H))
                for j in np.flatnonzero(run):  # equal first halves (~never): look along the run
                    k = at[j]
                    while k < len(H) and H[k] == qh[j] and not hit[j]:
                        hit[j] = L[k] == ql[j]
                        k += 1
                found_sorted[s:e] = hit
            new = first[s:e] & ~found_sorted[s:e]
            if new.any():
                self._hi[b] = np.insert(H, at[new], qh[new])
                self._lo[b] = np.insert(L, at[new], ql[new])
        found[order] = found_sorted
        return found


def duplicate_mask(hashes: np.ndarray) -> np.ndarray:
    """True for every row of ``key_hashes`` output that a later row (in API order) with the same key supersedes."""
    if len(hashes) == 0:
        return np.zeros(0, dtype=bool)
    keys = np.ascontiguousarray(hashes).view("S16").ravel()  # one 16-byte value per row
    return pd.Series(keys).duplicated(keep="last").to_numpy()
