"""The record rules of DESIGN.md, one behaviour per test, straight through transform and quality.

Each test builds raw API items, runs them through ``transform.parse_chunk`` and
``quality.check`` the way ``stages.transform_quality`` combines them (transform
reasons first, then quality reasons), and looks at the typed row or the reasons.
Duplicates go through ``key_hashes`` / ``duplicate_mask`` over the rows that
passed the transform, in API order, as the stage does.
"""

from __future__ import annotations

import json
import os
import time
from datetime import date, datetime, timedelta, timezone

import numpy as np
import orjson
import pandas as pd
import pytest

from eventpipe.core.process import clean_table
from eventpipe.core.quality import check
from eventpipe.core.records import KEY, duplicate_mask, key_hashes, parse_chunk
from eventpipe.settings import QualitySettings

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
DEFAULT_QUALITY = QualitySettings()
DROP = object()  # as a field value in ``item(...)``: leave the field out
T0 = pd.Timestamp("2024-05-01T10:00:00Z")  # the instant most timestamp forms below denote
GOOD = {
    "user_id": "u1",
    "event": "click",
    "timestamp": "2024-05-01T10:00:00Z",
    "properties": {"page": "/home"},
    "session_id": "s1",
}


def item(**changes):
    """A valid API item with some fields changed (``DROP`` removes a field)."""
    out = dict(GOOD)
    for key, value in changes.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def encode(x) -> bytes:
    return x if isinstance(x, bytes) else orjson.dumps(x)


def parse(*items) -> pd.DataFrame:
    """Items (objects or raw JSON bytes) -> the transform's frame, with ``seq`` in API order."""
    raws = [encode(x) for x in items]
    return parse_chunk(np.arange(len(raws), dtype="int64"), raws)


def all_reasons(
    df: pd.DataFrame, q: QualitySettings = DEFAULT_QUALITY, now: datetime = NOW
) -> list[list[str]]:
    """Transform reasons plus quality reasons per row, as ``stages.transform_quality`` combines them."""
    return [list(r) + qr for r, qr in zip(df["reasons"], check(df, q, now))]


def reasons_of(x, q: QualitySettings = DEFAULT_QUALITY, now: datetime = NOW) -> list[str]:
    return all_reasons(parse(x), q, now)[0]


def codes(reasons: list[str]) -> list[str]:
    return [r.split(":", 1)[0] for r in reasons]


def only_row(x) -> pd.Series:
    """The parsed row of one item, which must pass every rule."""
    df = parse(x)
    assert all_reasons(df) == [[]]
    return df.iloc[0]


def superseded(*chunks) -> list[bool]:
    """``duplicate_mask`` over the transform-clean rows of consecutive chunks (API order)."""
    hashes = []
    offset = 0
    for items in chunks:
        raws = [encode(x) for x in items]
        df = parse_chunk(np.arange(offset, offset + len(raws), dtype="int64"), raws)
        offset += len(raws)
        ok = df["reasons"].str.len().to_numpy() == 0
        assert ok.all(), f"test items must pass the transform: {list(df['reasons'])}"
        hashes.append(key_hashes(df[ok]))
    return duplicate_mask(np.concatenate(hashes)).tolist()


# -- a valid record ------------------------------------------------------------------------------


def test_valid_record_passes_with_typed_columns():
    row = only_row(GOOD)
    assert row["user_id"] == "u1"
    assert row["event_type"] == "click"
    assert row["timestamp"] == T0
    assert json.loads(row["properties"]) == {"page": "/home"}
    assert row["session_id"] == "s1"


# -- user_id -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw_user, expected",
    [
        (42, "42"),
        (0, "0"),
        (-7, "-7"),
    ],
)
def test_numeric_user_id_becomes_its_text(raw_user, expected):
    assert only_row(item(user_id=raw_user))["user_id"] == expected


def test_user_ids_beyond_64_bits_keep_their_exact_text():
    template = b'{"user_id": %s, "event": "click", "timestamp": "2024-05-01T10:00:00Z"}'
    df = parse(template % b"123456789012345678901234567890", template % b"123456789012345678901234567891")
    assert df["user_id"].tolist() == ["123456789012345678901234567890", "123456789012345678901234567891"]


@pytest.mark.parametrize(
    "raw_user, expected",
    [
        ("  u1 ", "u1"),
        ("\tu1\n", "u1"),
        (" user one ", "user one"),  # only the ends are trimmed
    ],
)
def test_user_id_whitespace_is_trimmed(raw_user, expected):
    assert only_row(item(user_id=raw_user))["user_id"] == expected


@pytest.mark.parametrize(
    "raw_user", [DROP, None, "", "   ", "\t\n"], ids=["missing", "null", "empty", "spaces", "tab-newline"]
)
def test_missing_or_blank_user_id_is_rejected(raw_user):
    reasons = reasons_of(item(user_id=raw_user))
    assert codes(reasons) == ["user_id_missing"], reasons


@pytest.mark.parametrize(
    "raw_user",
    [True, False, [1], [], {"id": 1}, {}],
    ids=["true", "false", "list", "empty-list", "dict", "empty-dict"],
)
def test_user_id_that_is_not_text_or_number_is_rejected(raw_user):
    reasons = reasons_of(item(user_id=raw_user))
    assert codes(reasons) == ["user_id_invalid"], reasons


@pytest.mark.parametrize("raw_user", ["u\x001", "\x00", "u1\x00"], ids=["inside", "alone", "at-end"])
def test_nul_character_in_user_id_is_rejected_with_a_reason(raw_user):
    reasons = reasons_of(item(user_id=raw_user))
    assert len(reasons) == 1 and reasons[0].startswith("user_id_"), reasons
    assert "NUL" in reasons[0]


# -- event -> event_type ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw_event, expected",
    [
        ("Page View", "page_view"),
        (" PAGE-VIEW ", "page_view"),
        ("Sign_Up", "sign_up"),
        ("sign-up", "sign_up"),
        ("page  view", "page_view"),
        ("PURCHASE", "purchase"),
        ("click", "click"),
    ],
)
def test_event_is_normalised_to_event_type(raw_event, expected):
    assert only_row(item(event=raw_event))["event_type"] == expected


@pytest.mark.parametrize("raw_event", ["refund", "Page Viewed", "page.view"])
def test_event_outside_the_allowed_set_is_rejected_by_quality(raw_event):
    df = parse(item(event=raw_event))
    assert df["reasons"][0] == []  # the transform accepts it ...
    reasons = all_reasons(df)[0]
    assert codes(reasons) == ["event_not_allowed"], reasons  # ... quality rejects it


def test_allowed_events_come_from_the_quality_settings():
    q = QualitySettings(allowed_events=("refund",))
    df = parse(item(event="Refund"), item(event="click"))
    assert [codes(r) for r in all_reasons(df, q)] == [[], ["event_not_allowed"]]


@pytest.mark.parametrize("raw_event", [DROP, None, "", "   "], ids=["missing", "null", "empty", "spaces"])
def test_missing_event_is_rejected(raw_event):
    reasons = reasons_of(item(event=raw_event))
    assert codes(reasons) == ["event_missing"], reasons


@pytest.mark.parametrize("raw_event", [5, True, ["click"], {"name": "click"}])
def test_event_that_is_not_text_is_rejected(raw_event):
    reasons = reasons_of(item(event=raw_event))
    assert len(reasons) == 1 and reasons[0].startswith("event_"), reasons


# -- timestamp -----------------------------------------------------------------------------------

TIMESTAMP_FORMS = {
    "iso-z": ("2024-05-01T10:00:00Z", T0),
    "iso-lower-z": ("2024-05-01t10:00:00z", T0),
    "offset-plus-0200": ("2024-05-01T12:00:00+02:00", T0),
    "offset-minus-0530": ("2024-05-01T04:30:00-05:30", T0),
    "no-offset-is-utc": ("2024-05-01T10:00:00", T0),
    "space-separator": ("2024-05-01 10:00:00", T0),
    "space-separator-with-offset": ("2024-05-01 12:00:00+02:00", T0),
    "fraction-of-second": ("2024-05-01T10:00:00.250Z", T0 + pd.Timedelta(milliseconds=250)),
    "date-only": ("2024-05-01", pd.Timestamp("2024-05-01T00:00:00Z")),
    "epoch-seconds-int": (1714557600, T0),
    "epoch-seconds-float-ms": (1714557600.123, T0 + pd.Timedelta(milliseconds=123)),
    "epoch-milliseconds": (1714557600123, T0 + pd.Timedelta(milliseconds=123)),
    "epoch-milliseconds-float": (1714557600123.0, T0 + pd.Timedelta(milliseconds=123)),
}


@pytest.mark.parametrize("raw_ts, expected", TIMESTAMP_FORMS.values(), ids=TIMESTAMP_FORMS.keys())
def test_timestamp_form_is_parsed_to_utc(raw_ts, expected):
    row = only_row(item(timestamp=raw_ts))
    assert row["timestamp"] == expected
    assert str(row["timestamp"].tz) == "UTC"


def test_all_timestamp_forms_in_one_chunk_parse_as_they_do_alone():
    """Mixing offsets, naive text and epochs in one chunk must not let one element's offset leak into another."""
    df = parse(*(item(timestamp=raw) for raw, _ in TIMESTAMP_FORMS.values()))
    assert all_reasons(df) == [[]] * len(TIMESTAMP_FORMS)
    assert df["timestamp"].tolist() == [expected for _, expected in TIMESTAMP_FORMS.values()]


@pytest.fixture
def new_york_time_zone():
    """The process time zone set to America/New_York (UTC-4 in May) for the test, restored afterwards."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    assert time.localtime(1714557600).tm_hour == 6, "TZ did not take effect"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.mark.usefixtures("new_york_time_zone")
def test_timestamp_without_offset_is_utc_whatever_the_process_time_zone():
    df = parse(
        item(timestamp="2024-05-01T10:00:00"),
        item(timestamp="2024-05-01 10:00:00"),
        item(timestamp="2024-05-01"),
        item(timestamp="2024-05-01T12:00:00+02:00"),
        item(timestamp=1714557600),
    )
    assert all_reasons(df) == [[]] * 5
    assert df["timestamp"].tolist() == [T0, T0, pd.Timestamp("2024-05-01T00:00:00Z"), T0, T0]


def test_epoch_seconds_with_a_fraction_are_exact_to_the_millisecond():
    bases = [1577836800, 1714557600, 1893456000]  # 2020, 2024, 2030
    values = [float(f"{b}.{ms:03d}") for b in bases for ms in range(1000)]
    df = parse(*(item(timestamp=v) for v in values))
    expected = [pd.Timestamp(b * 1000 + ms, unit="ms", tz="UTC") for b in bases for ms in range(1000)]
    wrong = [(v, got) for v, got, exp in zip(values, df["timestamp"], expected) if got != exp]
    assert wrong == []


def test_epoch_number_from_1e11_up_is_milliseconds():
    row = parse(item(timestamp=100_000_000_000)).iloc[0]
    assert row["reasons"] == []
    assert row["timestamp"] == pd.Timestamp("1973-03-03T09:46:40Z")  # 1e11 ms, not 1e11 s (year 5138)


@pytest.mark.parametrize(
    "raw_ts",
    [
        "05/01/2024 10:00",
        "garbage",
        "2024-13-45T10:00:00Z",
        "May 1, 2024",
        "10:00:00",
        True,
        [2024, 5, 1],
        {"seconds": 1714557600},
    ],
)
def test_unparseable_timestamp_is_rejected(raw_ts):
    reasons = reasons_of(item(timestamp=raw_ts))
    assert codes(reasons) == ["timestamp_unparseable"], reasons


@pytest.mark.parametrize("raw_ts", [DROP, None], ids=["missing", "null"])
def test_missing_timestamp_is_rejected(raw_ts):
    reasons = reasons_of(item(timestamp=raw_ts))
    assert codes(reasons) == ["timestamp_missing"], reasons


@pytest.mark.parametrize(
    "raw_ts, expected_codes",
    [
        ("2019-12-31T23:59:59Z", ["timestamp_before_min"]),
        ("2020-01-01T01:00:00+02:00", ["timestamp_before_min"]),  # 2019-12-31T23:00Z
        (1577836799, ["timestamp_before_min"]),
        ("2020-01-01T00:00:00Z", []),  # the minimum itself passes
    ],
)
def test_timestamp_before_min_timestamp_is_rejected(raw_ts, expected_codes):
    assert codes(reasons_of(item(timestamp=raw_ts))) == expected_codes


def test_min_timestamp_comes_from_the_quality_settings():
    q = QualitySettings(min_timestamp=datetime(2024, 5, 1, 12, tzinfo=timezone.utc))
    df = parse(item(timestamp="2024-05-01T11:59:59Z"), item(timestamp="2024-05-01T12:00:00Z"))
    assert [codes(r) for r in all_reasons(df, q)] == [["timestamp_before_min"], []]


@pytest.mark.parametrize(
    "ahead, expected_codes",
    [
        (timedelta(hours=1, seconds=1), ["timestamp_in_future"]),
        (timedelta(days=365), ["timestamp_in_future"]),
        (timedelta(hours=1), []),  # exactly now + max_future passes
        (timedelta(minutes=30), []),
    ],
)
def test_timestamp_beyond_now_plus_max_future_is_rejected(ahead, expected_codes):
    ts = (NOW + ahead).isoformat()
    assert codes(reasons_of(item(timestamp=ts))) == expected_codes


def test_max_future_comes_from_the_quality_settings():
    q = QualitySettings(max_future=timedelta(0))
    df = parse(item(timestamp=(NOW + timedelta(seconds=1)).isoformat()), item(timestamp=NOW.isoformat()))
    assert [codes(r) for r in all_reasons(df, q)] == [["timestamp_in_future"], []]


# -- properties ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw_props, expected",
    [
        ({"a": 1, "b": [1, 2], "c": {"d": None}}, {"a": 1, "b": [1, 2], "c": {"d": None}}),
        ({}, {}),
        ('{"a": 1, "b": "x"}', {"a": 1, "b": "x"}),
        ("{}", {}),
        (' {"a": 1} ', {"a": 1}),
        (DROP, {}),
        (None, {}),
    ],
    ids=[
        "object",
        "empty-object",
        "json-text-of-object",
        "json-text-empty-object",
        "json-text-with-spaces",
        "missing",
        "null",
    ],
)
def test_properties_object_or_json_text_or_absent_is_accepted(raw_props, expected):
    props = only_row(item(properties=raw_props))["properties"]
    assert json.loads(props) == expected


@pytest.mark.parametrize("raw_props", [DROP, None], ids=["missing", "null"])
def test_absent_properties_become_the_empty_object_text(raw_props):
    assert only_row(item(properties=raw_props))["properties"] == "{}"


@pytest.mark.parametrize(
    "raw_props",
    [
        [1, 2],
        [],
        3,
        1.5,
        True,
        "not json",
        "",
        "[1, 2]",
        '"text"',
        "42",
        "null",
    ],
    ids=[
        "list",
        "empty-list",
        "int",
        "float",
        "bool",
        "non-json-text",
        "empty-text",
        "json-text-of-list",
        "json-text-of-string",
        "json-text-of-number",
        "json-text-null",
    ],
)
def test_properties_that_are_not_an_object_are_rejected(raw_props):
    reasons = reasons_of(item(properties=raw_props))
    assert codes(reasons) == ["properties_invalid"], reasons


# -- session_id ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw_session, expected",
    [
        ("s1", "s1"),
        ("", ""),
        (None, None),
        (DROP, None),
        (7, "7"),
        (1717000000123, "1717000000123"),
        (-1, "-1"),
    ],
    ids=["text", "empty-text", "null", "missing", "int", "epoch-ms-int", "minus-one"],
)
def test_session_id_is_text_or_null(raw_session, expected):
    assert only_row(item(session_id=raw_session))["session_id"] == expected


@pytest.mark.parametrize(
    "raw_session", [1.5, True, ["s1"], {"id": "s1"}], ids=["float", "bool", "list", "dict"]
)
def test_session_id_that_is_not_text_or_null_is_rejected(raw_session):
    reasons = reasons_of(item(session_id=raw_session))
    assert len(reasons) == 1 and reasons[0].startswith("session_id"), reasons


# -- the record as a whole -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw_item",
    [[1, 2], [], "text", 5, 1.5, None, True],
    ids=["list", "empty-list", "string", "int", "float", "null", "bool"],
)
def test_item_that_is_not_an_object_is_rejected(raw_item):
    reasons = reasons_of(raw_item)
    assert codes(reasons) == ["record_not_object"], reasons


def test_record_with_several_problems_keeps_every_reason():
    bad = {
        "user_id": None,
        "event": "refund",
        "timestamp": "2010-01-01T00:00:00Z",
        "properties": [1],
        "session_id": 3.5,
    }
    reasons = reasons_of(bad)
    assert sorted(codes(reasons)) == sorted(
        [
            "user_id_missing",
            "properties_invalid",
            "session_id_invalid",  # transform
            "event_not_allowed",
            "timestamp_before_min",  # quality
        ]
    ), reasons


def test_record_with_several_transform_problems_keeps_every_reason():
    bad = {"user_id": ["u"], "timestamp": "05/01/2024 10:00", "properties": "nope"}
    reasons = reasons_of(bad)
    assert sorted(codes(reasons)) == sorted(
        ["user_id_invalid", "event_missing", "timestamp_unparseable", "properties_invalid"]
    ), reasons


def test_rejected_record_keeps_its_raw_form():
    raw = orjson.dumps({"user_id": None, "event": "Page View", "timestamp": "garbage", "x": "é"})
    df = parse(raw)
    assert df["reasons"][0] != []
    assert df["raw"][0].encode("utf-8") == raw


def test_one_bad_record_does_not_affect_its_neighbours():
    df = parse(item(user_id="a"), item(user_id=None), [1], item(user_id="b"))
    assert [codes(r) for r in all_reasons(df)] == [[], ["user_id_missing"], ["record_not_object"], []]
    assert df["user_id"].tolist()[::3] == ["a", "b"]


@pytest.mark.parametrize(
    "raw_ts, expected_date, expected_hour",
    [
        ("2024-05-01T23:30:00-02:00", date(2024, 5, 2), 1),  # 01:30Z the next day
        ("2024-05-02T00:30:00+02:00", date(2024, 5, 1), 22),  # 22:30Z the day before
        ("2024-05-01T10:00:00Z", date(2024, 5, 1), 10),
    ],
)
def test_enrichment_adds_event_date_and_hour_in_utc(raw_ts, expected_date, expected_hour):
    table = clean_table(parse(item(timestamp=raw_ts)))
    assert table["event_date"].to_pylist() == [expected_date]
    assert table["event_hour"].to_pylist() == [expected_hour]


# -- duplicates ----------------------------------------------------------------------------------


def test_duplicates_in_one_batch_collapse_to_the_last_one_seen():
    first = item(properties={"v": 1})
    other = item(user_id="u2")
    last = item(properties={"v": 2})
    assert superseded([first, other, last]) == [True, False, False]


def test_three_copies_leave_only_the_last():
    assert superseded([item(session_id="a"), item(session_id="b"), item(session_id="c")]) == [
        True,
        True,
        False,
    ]


@pytest.mark.parametrize(
    "earlier, later",
    [
        (item(user_id=42), item(user_id="42")),
        (item(user_id="  u1 "), item(user_id="u1")),
        (item(event="Page View"), item(event="page_view")),
        (item(event=" PAGE-VIEW "), item(event="page view")),
        (item(timestamp="2024-05-01T12:00:00+02:00"), item(timestamp="2024-05-01T10:00:00Z")),
        (item(timestamp=1714557600), item(timestamp="2024-05-01T10:00:00")),
        (item(timestamp=1714557600123), item(timestamp="2024-05-01T10:00:00.123Z")),
        (item(properties={"a": 1}, session_id="s1"), item(properties={"a": 2}, session_id=None)),
    ],
    ids=[
        "number-vs-text-user",
        "untrimmed-user",
        "event-spelling",
        "event-spelling-2",
        "offset-vs-z",
        "epoch-vs-naive",
        "epoch-ms-vs-iso-ms",
        "different-payload",
    ],
)
def test_same_key_in_another_spelling_is_a_duplicate(earlier, later):
    assert superseded([earlier, later]) == [True, False]


@pytest.mark.parametrize(
    "a, b",
    [
        (item(user_id="u1"), item(user_id="u2")),
        (item(event="click"), item(event="page_view")),
        (item(timestamp="2024-05-01T10:00:00.000Z"), item(timestamp="2024-05-01T10:00:00.001Z")),
        (item(user_id="1", event="click"), item(user_id="1c", event="lick")),
    ],
    ids=["user", "event", "one-ms-apart", "shifted-boundary"],
)
def test_records_that_differ_in_the_key_are_not_duplicates(a, b):
    assert superseded([a, b]) == [False, False]


def test_duplicates_across_two_chunks_collapse_to_the_one_in_the_later_chunk():
    a1, b, c, a2 = (
        item(user_id="a", session_id="1"),
        item(user_id="b"),
        item(user_id="c"),
        item(user_id="a", session_id="2"),
    )
    assert superseded([a1, b], [c, a2]) == [True, False, False, False]


def test_duplicates_across_chunks_keep_the_last_even_within_the_later_chunk():
    assert superseded([item(session_id="1")], [item(session_id="2"), item(session_id="3")]) == [
        True,
        True,
        False,
    ]


def test_key_hashes_are_pandas_hashes_of_the_key_columns():
    """The halves share one factorization of each text column; the hashes stay pandas' own (a key set of
    earlier parts compares against them)."""
    rows = pd.DataFrame(
        {
            "user_id": ["a", "b", None, "a", "1", "1.0", "é"],
            "timestamp": pd.to_datetime([0, 1, None, 3, 4, 4, 5], unit="s", utc=True),
            "event_type": ["click", None, "click", "view", "click", "click", "view"],
            "properties": ["{}"] * 7,
        },
        index=[9, 3, 5, 7, 1, 2, 4],
    )
    want = [
        pd.util.hash_pandas_object(rows[KEY], index=False, hash_key=k).to_numpy()
        for k in ("eventpipe-key-01", "eventpipe-key-02")
    ]
    assert (key_hashes(rows) == np.stack(want, axis=1)).all()
    assert key_hashes(rows[:0]).shape == (0, 2)


# -- awkward content passes through unchanged ----------------------------------------------------

AWKWARD_TEXT = {
    "quotes": "O'Brien said \"hi\" `and` 'bye'",
    "sql": "'; DROP TABLE analytics; -- \" OR 1=1; DELETE FROM dead_letter WHERE ''=''",
    "emoji": "👩‍💻🚀 naïve café 中文 עברית",
    "backslashes": "C:\\temp\\new\\table \\n not a newline",
    "control": "tab\there\nnewline\r\x07bell",
    "100kB": "x" * 100_000,
    "100kB-emoji": "😀" * 25_000,
}


@pytest.mark.parametrize("text", AWKWARD_TEXT.values(), ids=AWKWARD_TEXT.keys())
def test_awkward_user_id_passes_through_byte_for_byte(text):
    value = text.strip()  # the rule trims the ends; nothing else may change
    raw = orjson.dumps(item(user_id=text))
    row = only_row(raw)
    assert row["user_id"].encode("utf-8") == value.encode("utf-8")
    assert row["raw"].encode("utf-8") == raw


@pytest.mark.parametrize("text", AWKWARD_TEXT.values(), ids=AWKWARD_TEXT.keys())
def test_awkward_properties_pass_through_byte_for_byte(text):
    props = {"value": text, text[:50]: [text], "nested": {"again": text}}
    row = only_row(item(properties=props))
    assert json.loads(row["properties"]) == props


@pytest.mark.parametrize("text", AWKWARD_TEXT.values(), ids=AWKWARD_TEXT.keys())
def test_awkward_properties_given_as_json_text_pass_through(text):
    props = {"value": text}
    row = only_row(item(properties=json.dumps(props, ensure_ascii=False)))
    assert json.loads(row["properties"]) == props


@pytest.mark.parametrize("text", AWKWARD_TEXT.values(), ids=AWKWARD_TEXT.keys())
def test_awkward_session_id_passes_through_byte_for_byte(text):
    assert only_row(item(session_id=text))["session_id"].encode("utf-8") == text.encode("utf-8")


def test_properties_with_a_literal_backslash_u0000_text_pass_through():
    props = {"path": "C:\\u0000x"}  # backslash, 'u', '0', '0', '0', '0': no NUL character
    assert "\x00" not in props["path"]
    row = only_row(item(properties=props))
    assert json.loads(row["properties"]) == props


def nested(depth: int) -> dict:
    out: dict = {"leaf": "bottom"}
    for i in range(depth - 1):
        out = {f"level{i}": out}
    return out


def test_properties_nested_50_deep_pass():
    props = nested(50)
    assert json.loads(only_row(item(properties=props))["properties"]) == props


def test_properties_nested_50_deep_as_json_text_pass():
    props = nested(50)
    assert json.loads(only_row(item(properties=json.dumps(props)))["properties"]) == props
