"""The column-wise record rules against the per-record ones they replaced (``records_reference``).

Hypothesis generates chunks of dirty items: every field absent, null, of the wrong type, or text in
awkward forms (ISO timestamps with any separator, fraction and offset, out-of-range fields; epoch
numbers in seconds and milliseconds; JSON text of objects and of other things; NUL characters, lone
surrogates, integers beyond 64 bits). Both implementations must return the same frame: the same
rows, values and dtypes, and the same reasons in the same order; or fail with the same exception.
Each test also runs with blocks of 7 items, so a chunk spans several of ``records.BLOCK``'s blocks.
"""

from __future__ import annotations

import json

import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventpipe.core import records, records_reference
from eventpipe.demo.data import _generate_hour

ABSENT = object()

_texts = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        ["", "   ", "u1", " u1  ", "\x00", "u\x001", "\ud800", "x\udfff", "Page View", "  page-VIEW "]
    ),
)
_numbers = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 2**53 + 1, 2**63, 10**30, 1714557600, 1714557600123, 10**11, 99999999999]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1714557600.5, 1714557600123.0, 1e11, 9e12, -1e15, 1e300]),
)
_others = st.one_of(
    st.booleans(),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(0, 3) | st.text(max_size=3), max_size=2),
)


@st.composite
def _iso(draw: st.DrawFn) -> str:
    """ISO-shaped text: valid, or with one field out of range (month 13, hour 24, second 60, ...)."""
    odd = draw(st.integers(0, 9))  # which field (if any) is out of range

    def field(k: int, usual: st.SearchStrategy[int], wrong: list[int]) -> int:
        return draw(st.sampled_from(wrong)) if odd == k else draw(usual)

    year = field(0, st.sampled_from([1700, 1970, 2024, 2200]), [1600, 1677, 1699, 2201, 2262, 2263, 9999])
    month = field(1, st.integers(1, 12), [0, 13])
    day = field(2, st.sampled_from([1, 15, 28, 29, 30, 31]), [0, 32])
    date = f"{year:04d}-{month:02d}-{day:02d}"
    if odd == 6:
        date = date.replace("-", "")
    form = draw(st.integers(0, 9))
    if form == 0:
        return draw(st.sampled_from(["", " ", "\t"])) + date
    sep = draw(st.sampled_from(["T", "T", " ", "t"]))
    hms = f"{field(3, st.integers(0, 23), [24, 25]):02d}:{field(4, st.integers(0, 59), [60]):02d}:{field(5, st.integers(0, 59), [60, 61]):02d}"
    if form == 1:
        hms = hms[:5]
    frac = draw(st.sampled_from(["", "", ".5", ".123", ".123456", ".1234567", ".123456789"]))
    if odd == 7:
        frac = draw(st.sampled_from([".1234567891", ".", ".12a"]))
    offset = draw(st.sampled_from(["", "Z", "z", "+00:00", "-00:00", "+05:30", "-08:00", "+23:59", "-23:59"]))
    if odd == 8:
        offset = draw(st.sampled_from(["+24:00", "+0530", "+05", "-12:75", "+5:30", "Zz"]))
    pad = draw(st.sampled_from(["", "", " ", "\n"]))
    return pad + date + sep + hms + frac + offset + pad


_timestamps = st.one_of(
    _iso(),
    _iso(),
    _iso(),
    st.sampled_from(
        ["yesterday", "05/01/2024 10:00", "1714557600", "2024-05-01T10:00:00Zjunk", "2024-02-30"]
    ),
    _numbers,
    _texts,
)
_properties = st.one_of(
    st.dictionaries(st.text(max_size=4), st.integers(-(2**70), 2**70) | _texts | st.none(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(-3, 3), max_size=3).map(json.dumps),
    st.sampled_from(
        [
            '{"a": 1}',
            "{not json",
            "[1, 2]",
            "42",
            '"text"',
            "null",
            '{"n": 123456789012345678901}',
            '{"z": "\\u0000"}',
            '{"z": "\\\\u0000"}',
            '{"s": "\\ud800"}',
            '{"a": NaN}',
            "  {}  ",
        ]
    ),
    st.just({"z": "\x00"}),
    _texts,
    _numbers,
    _others,
)
_FIELDS = {
    "user_id": st.one_of(_texts, _numbers, _others),
    "event": st.one_of(_texts, _numbers, _others, st.sampled_from(["click", "Page View", "SIGN-UP", " - "])),
    "timestamp": _timestamps,
    "properties": _properties,
    "session_id": st.one_of(_texts, _numbers, _others),
}


@st.composite
def _item(draw: st.DrawFn) -> object:
    if draw(st.integers(0, 19)) == 0:  # not an object
        return draw(st.one_of(_texts, _numbers, _others, st.none()))
    out = {}
    for name, values in _FIELDS.items():
        choice = draw(st.integers(0, 9))
        if choice == 0:
            continue  # absent
        out[name] = None if choice == 1 else draw(values)
    return out


def _outcome(module, items):
    try:
        return module.parse_items(list(range(len(items))), items), None
    except Exception as e:  # noqa: BLE001 (compared below: both must fail alike)
        return None, type(e)


_BLOCKS = pytest.mark.parametrize("block", [records.BLOCK, 7], ids=["block", "small-blocks"], indirect=True)


@pytest.fixture
def block(request, monkeypatch):
    monkeypatch.setattr(records, "BLOCK", request.param)
    return request.param


@_BLOCKS
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(items=st.lists(_item(), min_size=1, max_size=30))
def test_column_wise_rules_equal_the_per_record_rules(block, items):
    want, want_error = _outcome(records_reference, items)
    got, got_error = _outcome(records, items)
    assert got_error == want_error
    if want is None:
        return
    pd.testing.assert_frame_equal(got, want)
    assert got["reasons"].tolist() == want["reasons"].tolist()
    for column in ("user_id", "event_type", "properties", "session_id"):  # None stays None, not NaN
        assert [type(v) for v in got[column]] == [type(v) for v in want[column]]


@_BLOCKS
def test_column_wise_rules_equal_the_per_record_rules_on_the_demo_data(block):
    """Two hours of the demo API's events (clean ones in every accepted shape, ~2 % dirty of every kind)."""
    items = [
        orjson.loads(g.body) for hour in (0, 1) for g in _generate_hour(1, 1500, 0.2, 0.05, 473000 + hour)
    ]
    edges = [
        f"{y}-{m}-{d}{sep}{t}{off}"
        for y in ("1699", "1700", "2200", "2262", "2263", "9999")
        for m, d in (("02", "28"), ("02", "29"), ("02", "30"), ("04", "31"), ("12", "31"), ("13", "01"))
        for sep in ("T", " ")
        for t in ("23:59:59.999999999", "24:00:00", "00:00:60")
        for off in ("", "Z", "-23:59")
    ]
    base = "2024-05-01T10:00:00.123456"
    edges += [  # near misses of the common forms, read as sent: each must go the way the oracle goes
        f"{base}{tail}"
        for tail in (
            "\x00",
            "Z\x00",
            "+05:30\x00",
            "\x00+05:30",
            "Z ",
            " ",
            "z",
            "ÿ",
            "Z\u0660",
            "+05:3\u0660",
        )
    ]
    edges += [
        base.replace("1", "\u0661"),  # an Arabic-Indic digit, which Python's int() would read
        base.replace("T", "t"),
        base.replace("-", "\u2010"),
        base + "0" * 9,
        base[:19] + "." + "1" * 20 + "Z",
        " " + base,
        base[:19] + ".Z",
        base[:19] + "+05:30:00",
        base[:19] + "+05:30Z",
        base[:19] + "-0530",
    ]
    items += [{"user_id": "u", "event": "e", "timestamp": ts} for ts in edges]
    seq = list(range(len(items)))
    want = records_reference.parse_items(seq, items)
    got = records.parse_items(seq, items)
    pd.testing.assert_frame_equal(got, want)
    assert got["reasons"].tolist() == want["reasons"].tolist()
    assert sum(bool(r) for r in want["reasons"]) > 300  # the dirty kinds are there
