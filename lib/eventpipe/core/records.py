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
from dataclasses import dataclass
from itertools import repeat
from operator import is_not
from typing import Any, NamedTuple

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from ..jsonio import dumps, loads, loads_plain

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
    if type(v) is int:  # Amplitude's and Mixpanel's session ids are numbers: kept as text, like user_id
        return str(v), None
    return None, f"session_id_invalid: {type(v).__name__} is not text, an integer or null"


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


# Column-wise rules. A column is handled by the type of its values: the common types (text, integers,
# objects, null) through C-level maps over the whole column, anything else one value at a time through
# the scalar rules above, which ``records_reference`` (the per-record oracle) also uses. Reasons are rare:
# each rule writes its reason into a column of its own, and only flagged rows build their lists.
_NONE, _STR, _INT, _FLOAT, _DICT, _OTHER = range(6)
_TYPE_CODE: dict[type, int] = {type(None): _NONE, str: _STR, int: _INT, float: _FLOAT, dict: _DICT}
# the two common ISO forms (upper-cased, trimmed) whose offset ``_with_offset`` would find, or not find
_ISO_WITH_OFFSET = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:[0-9]{2})"
).fullmatch
_ISO_NO_OFFSET = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
).fullmatch


def _objects(values: Any, n: int) -> np.ndarray:
    """An object array of ``n`` values (lists and dicts stay single values)."""
    return np.fromiter(values, dtype=object, count=n)


def _type_codes(values: list[Any]) -> np.ndarray:
    return np.fromiter(
        map(_TYPE_CODE.get, map(type, values), repeat(_OTHER)), dtype=np.int8, count=len(values)
    )


def _has_nul(texts: list[str], needle: str = "\x00") -> list[int]:
    """Indices of the texts that contain ``needle`` (one search over the whole column first)."""
    if needle not in "".join(texts):
        return []
    return [j for j, s in enumerate(texts) if needle in s]


class _Column:
    """One field of every record: its values, their type codes, the parsed values and a reason per row."""

    def __init__(self, values: list[Any]) -> None:
        self.n = n = len(values)
        self.values = _objects(values, n)
        self.codes = _type_codes(values)
        self.out = np.full(n, None, dtype=object)
        self.why = np.full(n, None, dtype=object)

    def where(self, code: int) -> np.ndarray:
        return np.flatnonzero(self.codes == code)

    def one_by_one(self, idx: np.ndarray, rule: Any) -> None:
        """The scalar rule, value by value (rare types)."""
        for i in idx:
            self.out[i], self.why[i] = rule(self.values[i])

    def others(self, handled: tuple[int, ...]) -> np.ndarray:
        return np.flatnonzero(~np.isin(self.codes, handled))


def _user_ids(values: list[Any]) -> _Column:
    col = _Column(values)
    i = col.where(_STR)
    if len(i):
        s = list(map(str.strip, col.values[i]))
        col.out[i] = _objects(s, len(s))
        empty = i[np.fromiter(map(len, s), dtype=np.int64, count=len(s)) == 0]
        col.out[empty] = None
        col.why[empty] = "user_id_missing: empty text"
        nul = i[_has_nul(s)]
        col.out[nul] = None
        col.why[nul] = "user_id_invalid: contains a NUL character"
    i = col.where(_INT)
    col.out[i] = _objects(map(str, col.values[i]), len(i))
    col.why[col.where(_NONE)] = "user_id_missing: absent or null"
    col.one_by_one(col.others((_STR, _INT, _NONE)), _user_id)
    return col


def _event_types(values: list[Any]) -> _Column:
    col = _Column(values)
    i = col.where(_STR)
    if len(i):
        texts = col.values[i]
        norm = {v: _EVENT_SEP.sub("_", v.strip().lower()) or None for v in dict.fromkeys(texts)}
        col.out[i] = _objects(map(norm.__getitem__, texts), len(i))
    unset = col.out == None  # noqa: E711 (element-wise)
    missing = unset & ((col.codes == _NONE) | (col.codes == _STR))
    col.why[missing] = "event_missing: absent, null or empty"
    for j in np.flatnonzero(unset & ~missing):
        col.why[j] = f"event_invalid: {type(col.values[j]).__name__} is not text"
    return col


def _with_offsets(texts: np.ndarray) -> tuple[list[str | None], np.ndarray]:
    """``_with_offset`` of every text (the two common ISO forms by one regex each, the rest one by one),
    and which of them were in a common form (now all with an offset)."""
    up = list(map(str.upper, map(str.strip, texts)))
    fixed: list[str | None] = []
    strict = np.zeros(len(up), dtype=bool)
    add = fixed.append
    for j, s in enumerate(up):
        if _ISO_WITH_OFFSET(s):
            add(s)
        elif _ISO_NO_OFFSET(s):
            add(s + "+00:00")
        else:
            add(_with_offset(texts[j]))
            continue
        strict[j] = True
    return fixed, strict


def _iso_ns(chars: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nanoseconds since the epoch of texts given as a matrix of character codes (one row a text, padded
    with zeros), and a mask of the texts that are exactly one of the two common ISO forms
    (``_ISO_WITH_OFFSET``, or ``_ISO_NO_OFFSET`` read as UTC) with fields plainly in range. The rest (other
    forms, years outside 1700-2200, hour 24, second 60, a day past its month's end) is left to pandas, so
    every result equals ``pd.to_datetime(..., format="ISO8601")``'s."""
    n, width = chars.shape
    rows = np.arange(n)
    by_position = np.ascontiguousarray(chars.T)  # a position of every text is read at once

    def at(k: int | np.ndarray) -> np.ndarray:  # the character at position k (per row when an array)
        return (by_position[k] if isinstance(k, int) else by_position[np.minimum(k, width - 1), rows]).astype(
            np.int64
        )

    def is_digit(c: np.ndarray) -> np.ndarray:
        return (c >= 48) & (c <= 57)

    def num(a: int, b: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.int64)
        for k in range(a, b):
            out = out * 10 + (at(k) - 48)
        return out

    shaped = np.ones(n, dtype=bool)
    for k in (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18):
        shaped &= is_digit(at(k))
    for k, sep in ((4, "-"), (7, "-"), (13, ":"), (16, ":")):
        shaped &= at(k) == ord(sep)
    shaped &= (at(10) == ord("T")) | (at(10) == ord(" "))
    year, month, day = num(0, 4), num(5, 7), num(8, 10)
    hour, minute, second = num(11, 13), num(14, 16), num(17, 19)
    frac = np.zeros(n, dtype=np.int64)
    run = at(19) == ord(".")
    pos = np.full(n, 19, dtype=np.int64)
    pos[run] = 20
    for j in range(9):
        c = at(20 + j)
        digit = run & is_digit(c)
        frac += np.where(digit, (c - 48) * 10 ** (8 - j), 0)
        pos += digit
        run &= digit
    shaped &= pos != 20  # a point needs a digit after it
    sign = at(pos)
    zulu = sign == ord("Z")
    naive = pos == lengths
    signed = (sign == ord("+")) | (sign == ord("-"))
    shaped &= np.where(
        signed,
        is_digit(at(pos + 1))
        & is_digit(at(pos + 2))
        & (at(pos + 3) == ord(":"))
        & is_digit(at(pos + 4))
        & is_digit(at(pos + 5))
        & (pos + 6 == lengths),
        naive | (zulu & (pos + 1 == lengths)),
    )
    off_h = (at(pos + 1) - 48) * 10 + (at(pos + 2) - 48)
    off_m = (at(pos + 4) - 48) * 10 + (at(pos + 5) - 48)
    offset = np.where(signed, np.where(sign == ord("-"), -1, 1) * (off_h * 60 + off_m), 0)
    months = (year - 1970) * 12 + month - 1
    first = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    days_in = (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64) - first
    sane = (
        shaped
        & (year >= 1700)
        & (year <= 2200)
        & (month >= 1)
        & (month <= 12)
        & (day >= 1)
        & (day <= days_in)
        & (hour <= 23)
        & (minute <= 59)
        & (second <= 59)
        & (~signed | ((off_h <= 23) & (off_m <= 59)))
    )
    secs = (first + day - 1) * 86400 + hour * 3600 + minute * 60 + second - offset * 60
    return np.where(sane, secs * 1_000_000_000 + frac, 0), sane


def _iso_common(texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_iso_ns`` of the texts as sent: those already in a common form (no padding, upper-case ``T`` and
    ``Z``) are what ``_with_offset`` would leave as they are, or only give ``+00:00``; so the regexes and
    per-text strings of ``_with_offsets`` are needed for the other texts only."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))  # longer than 35: not the shape
    codes = np.array(texts, dtype="U35").view(np.uint32).reshape(len(texts), 35)
    # one byte a character: any beyond Latin-1 becomes 255, which fails the shape as the character did
    return _iso_ns(np.minimum(codes, 255).astype(np.uint8), lengths)


def _iso_other(texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nanoseconds since the epoch of texts in any form and a mask of the parsed ones: trimmed and upper-cased
    by ``_with_offsets``, the common forms then by ``_iso_ns``, the rest by pandas."""
    fixed, strict = _with_offsets(texts)
    ns = np.zeros(len(texts), dtype=np.int64)
    good = strict.copy()
    idx = np.flatnonzero(strict)
    if len(idx):
        common = [str(fixed[i]) for i in idx]  # ASCII of at most 35 characters: one byte a character
        lengths = np.fromiter(map(len, common), dtype=np.int64, count=len(idx))
        chars = np.array(common, dtype="S35").view(np.uint8).reshape(len(idx), 35)
        ns[idx], good[idx] = _iso_ns(chars, lengths)
    rest = np.flatnonzero(~good)
    if len(rest):
        parsed = pd.to_datetime(
            pd.Series([fixed[j] for j in rest], dtype=object), format="ISO8601", utc=True, errors="coerce"
        )
        got = parsed.notna().to_numpy()
        ns[rest[got]] = parsed[got].dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").view(np.int64)
        good[rest] = got
    return ns, good


def _timestamp_ns(values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Mixed ISO text / epoch numbers -> UTC nanoseconds (``datetime64[ns]``, NaT where unusable) and a reason
    per failure."""
    col = _Column(values)
    n = col.n
    out = np.full(n, np.datetime64("NaT", "ns"), dtype="datetime64[ns]")
    why = col.why
    why[col.where(_NONE)] = "timestamp_missing: absent or null"
    for i in col.others((_NONE, _STR, _INT, _FLOAT)):
        why[i] = (
            f"timestamp_unparseable: {type(col.values[i]).__name__} is neither ISO 8601 text nor epoch number"
        )
    idx = np.flatnonzero((col.codes == _INT) | (col.codes == _FLOAT))
    if len(idx):
        arr = np.fromiter(map(float, col.values[idx]), dtype="float64", count=len(idx))
        with np.errstate(invalid="ignore", over="ignore"):
            us = np.where(np.abs(arr) >= 1e11, arr * 1e3, arr * 1e6)  # >= 1e11: milliseconds
            ok = np.isfinite(us) & (np.abs(us) < _MAX_EPOCH_US)
        out[idx[ok]] = (np.round(us[ok]).astype("int64") * 1000).astype("datetime64[ns]")
        for i in idx[~ok]:
            why[i] = f"timestamp_unparseable: epoch {col.values[i]!r} is out of range"
    idx = col.where(_STR)
    if len(idx):
        # no offset means UTC; normalise first, because pandas applies one element's offset to naive ones
        texts = col.values[idx]
        ns, good = _iso_common(texts)
        rest = np.flatnonzero(~good)
        if len(rest):
            ns[rest], good[rest] = _iso_other(texts[rest])
        out[idx[good]] = ns[good].astype("datetime64[ns]")
        for j in np.flatnonzero(~good):
            why[idx[j]] = f"timestamp_unparseable: {texts[j]!r:.60} is not ISO 8601"
    return out, why


def _utc_us(ns: np.ndarray) -> pd.Series:
    """``datetime64[ns]`` values -> a UTC timestamp column at µs precision (the record rules' precision)."""
    return pd.Series(ns, dtype="datetime64[ns]").dt.floor("us").dt.tz_localize("UTC")


def _timestamps(values: list[Any]) -> tuple[pd.Series, np.ndarray]:
    """Mixed ISO text / epoch numbers -> UTC timestamps (µs precision) and a reason per failure."""
    ns, why = _timestamp_ns(values)
    return _utc_us(ns), why


def parse_timestamps(values: list[Any]) -> tuple[pd.Series, list[str | None]]:
    """Mixed ISO text / epoch numbers -> UTC timestamps and a reason per failure, by the record rules (the
    arrival times of ``core.lateness`` are read as the event times are)."""
    ts, why = _timestamps(values)
    return ts, list(why)


def _properties_texts(values: list[Any]) -> _Column:
    col = _Column(values)
    col.out[col.where(_NONE)] = "{}"
    i = col.where(_DICT)
    if len(i):
        try:
            texts = list(map(bytes.decode, map(orjson.dumps, col.values[i])))
        except TypeError:  # e.g. integers beyond 64 bits: the scalar rule, which falls back to json
            col.one_by_one(i, _properties)
        else:
            col.out[i] = _objects(texts, len(i))
            for j in _has_nul(texts, "\\u0000"):
                if _NUL_ESCAPE.search(texts[j]):
                    col.out[i[j]] = None
                    col.why[i[j]] = (
                        "properties_invalid: contains a NUL character (\\u0000), which jsonb cannot store"
                    )
    i = col.where(_STR)
    if len(i):
        _properties_from_text(col, i)
    col.one_by_one(col.others((_NONE, _DICT, _STR)), _properties)
    return col


def _properties_from_text(col: _Column, i: np.ndarray) -> None:
    """Properties given as JSON text: msgspec over the column; anything it does not read as an object (not
    JSON, a lone surrogate, another type), or an object orjson cannot write back (a number beyond 64 bits), goes
    through ``_properties``."""
    texts = col.values[i]
    parsed = list(map(loads_plain, texts))
    objects = np.fromiter((type(v) is dict for v in parsed), bool, len(parsed))
    col.one_by_one(i[~objects], _properties)
    j = np.flatnonzero(objects)
    try:
        out = list(map(bytes.decode, map(orjson.dumps, (parsed[k] for k in j))))
    except TypeError:
        col.one_by_one(i[j], _properties)
        return
    col.out[i[j]] = _objects(out, len(out))
    for k in _has_nul(out, "\\u0000"):
        if _NUL_ESCAPE.search(out[k]):
            col.out[i[j[k]]] = None
            col.why[i[j[k]]] = (
                "properties_invalid: contains a NUL character (\\u0000), which jsonb cannot store"
            )


def _session_ids(values: list[Any]) -> _Column:
    col = _Column(values)
    i = col.where(_STR)
    col.out[i] = col.values[i]
    nul = i[_has_nul(list(col.values[i]))]
    col.out[nul] = None
    col.why[nul] = "session_id_invalid: contains a NUL character"
    i = col.where(_INT)
    col.out[i] = _objects(map(str, col.values[i]), len(i))
    col.one_by_one(col.others((_NONE, _STR, _INT)), _session_id)
    return col


_NO_REASONS: list[str] = []  # shared by every clean row; never mutated
_EMPTY: dict[str, Any] = {}
# Records parsed together. Every rule is a few passes over a field's values; over a whole part (100k
# records, ~60 MB of Python objects) each pass reads them from main memory again, over a block they are
# still in the cache from the pass before (a 100k-record part: ~0.30 -> ~0.21 s here).
BLOCK = 8192


TEXT_COLUMNS = ("user_id", "event_type", "properties", "session_id")


class Block(NamedTuple):
    """Some items parsed (``parse_block``): their typed columns, each one's reasons (an object array of lists)
    and, when asked for, the text columns (``TEXT_COLUMNS``) as Arrow arrays (None when a value cannot be
    Arrow text)."""

    user_id: np.ndarray
    event_type: np.ndarray
    timestamp: np.ndarray  # datetime64[ns], NaT where unusable
    properties: np.ndarray
    session_id: np.ndarray
    reasons: np.ndarray
    texts: tuple[pa.Array, ...] | None

    def view(self) -> pd.DataFrame:
        """The block's event types and times as the frame has them (what the quality rules and the window
        read)."""
        return pd.DataFrame({"event_type": self.event_type, "timestamp": _utc_us(self.timestamp)})


def parse_block(items: list[Any], carried: tuple[str, str] | None = None, arrow: bool = False) -> Block:
    """``parse_items`` of some items (best at most ``BLOCK`` of them), as columns: ``assemble`` makes the
    frame of the blocks of a chunk."""
    n = len(items)
    not_object = np.fromiter(map(is_not, map(type, items), repeat(dict)), dtype=bool, count=n)
    src = items
    if not_object.any():  # the few items that are not objects give no fields
        src = list(items)
        for i in np.flatnonzero(not_object):
            src[i] = _EMPTY
    get = dict.get
    user = _user_ids(list(map(get, src, repeat("user_id"))))
    event = _event_types(list(map(get, src, repeat("event"))))
    ts, ts_why = _timestamp_ns(list(map(get, src, repeat("timestamp"))))
    props = _properties_texts(list(map(get, src, repeat("properties"))))
    sess = _session_ids(list(map(get, src, repeat("session_id"))))

    whys = (user.why, event.why, ts_why, props.why, sess.why)
    flagged = not_object.copy()
    for why in whys:
        flagged |= why != None  # noqa: E711 (element-wise)
    reasons = np.empty(n, dtype=object)  # of lists: filled, not converted from a list of lists
    reasons.fill(_NO_REASONS)
    for i in np.flatnonzero(flagged):
        if not_object[i]:
            reasons[i] = [f"record_not_object: item is a {type(items[i]).__name__}"]
        else:
            reasons[i] = [w[i] for w in whys if w[i]]
    if carried is not None:
        key, reason = carried
        held = list(map(get, src, repeat(key), repeat(_MISSING)))
        if held.count(_MISSING) != n:  # rare: items that carry their own reason
            for i in np.flatnonzero(np.fromiter(map(is_not, held, repeat(_MISSING)), dtype=bool, count=n)):
                reasons[i] = [str(items[i].get(reason, "record_unparseable"))]
    texts = None
    if arrow:
        try:
            texts = tuple(pa.array(c.out, type=pa.string()) for c in (user, event, props, sess))
        except (UnicodeError, pa.ArrowException):  # e.g. a lone surrogate
            texts = None
    return Block(user.out, event.out, ts, props.out, sess.out, reasons, texts)


@dataclass
class Parsed:
    """``parse_items``' frame and, for the clean files, its text columns (``TEXT_COLUMNS``) as Arrow
    arrays, or None where a value cannot be Arrow text. Arrow copies the strings a block at a time, while
    they are still in the cache: from the whole frame later, ``from_pandas`` read them from memory again."""

    frame: pd.DataFrame
    text: dict[str, pa.ChunkedArray] | None


def parse_items(
    seq: np.ndarray | list[int], items: list[Any], carried: tuple[str, str] | None = None
) -> pd.DataFrame:
    """Parsed API items -> one row per item with typed columns and its transform reasons (a list).

    The same frame as ``records_reference.parse_items`` (the per-record rules), computed a column at
    a time, ``BLOCK`` items at a time (each record's fate depends on that record alone). With
    ``carried=(key, reason_key)``, an object that holds ``key`` has one reason instead of its own: the text
    under ``reason_key`` (``record_unparseable`` without it)."""
    return parse_columns(seq, items, carried).frame


def parse_columns(
    seq: np.ndarray | list[int], items: list[Any], carried: tuple[str, str] | None = None, arrow: bool = False
) -> Parsed:
    """``parse_items``, and with ``arrow`` its text columns as Arrow arrays too (``Parsed``)."""
    return assemble(
        seq, [parse_block(items[s : s + BLOCK], carried, arrow) for s in range(0, len(items), BLOCK)]
    )


def assemble(seq: np.ndarray | list[int], blocks: list[Block]) -> Parsed:
    """The frame of the blocks a chunk was parsed in (``parse_block``, in order), and their Arrow text
    columns when every block has them."""
    if not blocks:
        blocks = [parse_block([], None, False)]
    user, event, ts, props, sess, reasons = (
        cols[0] if len(blocks) == 1 else np.concatenate(cols) for cols in zip(*(b[:6] for b in blocks))
    )
    text = None
    if all(b.texts is not None for b in blocks):
        text = {
            name: pa.chunked_array([b.texts[k] for b in blocks], pa.string())  # type: ignore[index]
            for k, name in enumerate(TEXT_COLUMNS)
        }
    del blocks
    # a column at a time: ``DataFrame(dict)`` would first copy the object columns into one 2-D block
    df = pd.DataFrame({"seq": pd.Series(seq, dtype="int64")})
    df["user_id"] = user
    df["event_type"] = event
    df["timestamp"] = _utc_us(ts)
    df["properties"] = props
    df["session_id"] = sess
    df["reasons"] = reasons
    return Parsed(df, text)


def parse_chunk(seq: np.ndarray | list[int], raw: list[bytes]) -> pd.DataFrame:
    """Serialised items -> ``parse_items`` plus each item's raw text (for callers holding JSON text)."""
    df = parse_items(seq, [loads(b) for b in raw])
    df["raw"] = [b.decode("utf-8", "replace") if isinstance(b, bytes) else b for b in raw]
    return df


def _categories(col: pd.Series) -> Any:
    """A text column as a categorical one, which pandas hashes alike: it factorizes a text column each time it
    hashes one, so the two halves of ``key_hashes`` share one factorization."""
    if col.dtype != object:
        return col.array
    codes, uniques = pd.factorize(col.to_numpy(), sort=False)
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(pd.Index(uniques, dtype=object)))


def key_hashes(df: pd.DataFrame) -> np.ndarray:
    """A 128-bit hash of the natural key per row (two independent 64-bit halves)."""
    keys = pd.DataFrame({c: _categories(df[c]) for c in KEY})
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
