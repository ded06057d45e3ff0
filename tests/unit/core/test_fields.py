"""The field map: paths with fallbacks, units, dropped keys; the record as sent stays untouched."""

from __future__ import annotations

import re

import pytest

from eventpipe.core.fields import FieldMap
from eventpipe.errors import SettingsError
from eventpipe.rundir import unparsed

MIXPANEL = {
    "user_id": ["properties.distinct_id", "distinct_id"],
    "event": "event",
    "timestamp": {"path": "properties.time", "unit": "s"},
    "properties": {"path": "properties", "drop": ["time", "distinct_id"]},
    "session_id": "properties.$session_id",
}


def test_paths_fallbacks_units_and_drops():
    record = {
        "event": "Click",
        "properties": {"time": 1714557600, "distinct_id": "u1", "$session_id": "s", "k": 1},
    }
    [out] = FieldMap.parse(MIXPANEL).mapper()([record])
    assert out == {
        "user_id": "u1",
        "event": "Click",
        "timestamp": 1714557600,
        "properties": {"$session_id": "s", "k": 1},
        "session_id": "s",
    }
    assert record["properties"]["time"] == 1714557600  # the record as sent is untouched


def test_first_present_and_not_null_wins_and_null_stays_null():
    m = FieldMap.parse({"user_id": ["a", "b", "c"], "event": "e", "timestamp": "t"}).mapper()
    assert [x.get("user_id", "absent") for x in m([{"a": None, "b": "u2"}, {"a": None}, {}])] == [
        "u2",
        None,
        "absent",
    ]


@pytest.mark.parametrize(
    "unit, value, expected",
    [
        ("ms", 1714557600123, 1714557600123),
        ("us", 1714557600123456, 1714557600123),
        ("s", 1714557600.5, 1714557600.5),
    ],
)
def test_units(unit, value, expected):
    spec = {"user_id": "u", "event": "e", "timestamp": {"path": "t", "unit": unit}}
    [out] = FieldMap.parse(spec).mapper()([{"t": value}])
    assert out["timestamp"] == expected


def test_identity_map_is_free_and_unparsed_records_pass_unchanged():
    assert FieldMap.parse({}).identity
    stand_in = unparsed("[[[", "record_unparseable: x")
    assert FieldMap.parse(MIXPANEL).mapper()([stand_in, [1]]) == [stand_in, [1]]


@pytest.mark.parametrize(
    "spec, mentions",
    [
        ({"user": "x"}, "unknown field 'user'"),
        ({"timestamp": {"path": "t", "unit": "h"}, "user_id": "u", "event": "e"}, "unit 'h'"),
        ({"event": [""], "user_id": "u", "timestamp": "t"}, "source.fields.event"),
        ({"event": {"from": "x"}, "user_id": "u", "timestamp": "t"}, "path"),
    ],
)
def test_bad_field_maps_name_their_key(spec, mentions):
    with pytest.raises(SettingsError, match=mentions):
        FieldMap.parse(spec)


SEND_ALL = {
    "user_id": "u1",
    "event": "click",
    "timestamp": 1714557600,
    "properties": {"k": 1},
    "session_id": "s",
}


def test_without_a_map_every_field_reads_its_own_name():
    [out] = FieldMap.parse({}).mapper()([SEND_ALL])
    assert out == SEND_ALL


@pytest.mark.parametrize(
    "unmapped", [{}, {"session_id": None}, {"session_id": []}], ids=["left out", "null", "[]"]
)
def test_a_map_reads_only_what_it_names(unmapped):
    """The record's own session_id and properties are not read when the map leaves them out (or null)."""
    spec = {"user_id": "user_id", "event": "event", "timestamp": "timestamp", "properties": None, **unmapped}
    [out] = FieldMap.parse(spec).mapper()([SEND_ALL])
    assert out == {"user_id": "u1", "event": "click", "timestamp": 1714557600}


@pytest.mark.parametrize("field", ["user_id", "event", "timestamp"])
@pytest.mark.parametrize("how", ["left out", "null", "[]"])
def test_a_map_without_a_required_field_is_a_settings_error(field, how):
    spec: dict = {"user_id": "user_id", "event": "event", "timestamp": "timestamp"}
    if how == "left out":
        del spec[field]
    else:
        spec[field] = None if how == "null" else []
    with pytest.raises(SettingsError, match=f"maps no {field} \\({field}: {re.escape(how)}\\)"):
        FieldMap.parse(spec)
