"""The field map: paths with fallbacks, units, dropped keys; the record as sent stays untouched."""

from __future__ import annotations

import pytest

from eventpipe.core.fields import FieldMap
from eventpipe.errors import SettingsError
from eventpipe.rundir import unparsed

MIXPANEL = {
    "user_id": ["properties.distinct_id", "distinct_id"],
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
    m = FieldMap.parse({"user_id": ["a", "b", "c"]}).mapper()
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
    [out] = FieldMap.parse({"timestamp": {"path": "t", "unit": unit}}).mapper()([{"t": value}])
    assert out["timestamp"] == expected


def test_identity_map_is_free_and_unparsed_records_pass_unchanged():
    assert FieldMap.parse({}).identity
    stand_in = unparsed("[[[", "record_unparseable: x")
    assert FieldMap.parse(MIXPANEL).mapper()([stand_in, [1]]) == [stand_in, [1]]


@pytest.mark.parametrize(
    "spec, mentions",
    [
        ({"user": "x"}, "unknown field 'user'"),
        ({"timestamp": {"path": "t", "unit": "h"}}, "unit 'h'"),
        ({"event": []}, "source.fields.event"),
        ({"event": {"from": "x"}}, "path"),
    ],
)
def test_bad_field_maps_name_their_key(spec, mentions):
    with pytest.raises(SettingsError, match=mentions):
        FieldMap.parse(spec)
