"""``jsonio.loads`` reads JSON exactly as the standard library's ``json.loads`` does: the same values and
types (integers of any size stay exact), and an error wherever it raises one."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventpipe.jsonio import loads


def outcome(f, data):
    """What ``f`` makes of ``data``: its value as ``repr`` shows it (types included, NaN equal to NaN), or the
    kind of error."""
    try:
        return "value", repr(f(data))
    except RecursionError:
        return "error", "RecursionError"
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return "error", "ValueError"


EDGES = [
    b"18446744073709551615",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"[123456789012345678901234567890, -1e19, 1.0, 1e2, -0, -0.0]",
    b"[1e400, -1e400, 1.7976931348623157e309, 1e-400, 4.9e-324]",
    b'"\\ud800"',
    b'"\\ud83d\\ude00"',
    b'"\\udc00\\ud800"',
    b'["\xed\xa0\x80"]',
    b'"\xff"',
    b"NaN",
    b"[Infinity, -Infinity]",
    b"\xef\xbb\xbf[1]",
    b'{"a": 1, "a": 2}',
    b'"\\u0000"',
    b"[1,]",
    b'"\x01"',
    b'"\t"',
    b"[01]",
    b"+1",
    b"'a'",
    b" [1]\n",
    b"[1] x",
    b"",
    b"[" * 5000 + b"]" * 5000,
    b"[" * 900 + b"]" * 900,
    b'{"\xc3\xa9": "\xf0\x9f\x98\x80", "a\\/b": [true, false, null]}',
]


@pytest.mark.parametrize("data", EDGES, ids=range(len(EDGES)))
def test_edge_cases_read_as_the_standard_library_reads_them(data):
    assert outcome(loads, data) == outcome(json.loads, data)
    if not data.startswith(b"\xef\xbb\xbf"):  # text input: json.loads refuses a byte-order mark in a str
        text = data.decode("utf-8", "surrogatepass") if outcome(json.loads, data)[0] == "value" else None
        if text is not None:
            assert outcome(loads, text) == outcome(json.loads, text)


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(values, st.booleans())
def test_any_json_value_reads_back_as_the_standard_library_reads_it(value, ascii_only):
    data = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    assert outcome(loads, data) == outcome(json.loads, data)


@settings(max_examples=400, deadline=None)
@given(
    st.binary(max_size=40)
    | st.text(alphabet='[]{}",:0123456789.eE+-tfnrulasu\\ ', max_size=40).map(str.encode)
)
def test_any_bytes_read_or_refused_as_the_standard_library_does(data):
    assert outcome(loads, data) == outcome(json.loads, data)
