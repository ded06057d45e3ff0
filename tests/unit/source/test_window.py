"""How a window is sent: each instant format, inclusive ends at their granularity, step slicing."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from eventpipe.errors import SettingsError
from eventpipe.source.window import WindowSpec

A = datetime(2024, 5, 1, 10, 30, tzinfo=timezone.utc)
B = datetime(2024, 5, 3, 7, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "spec, since, until",
    [
        ({}, "2024-05-01T10:30:00Z", "2024-05-03T07:00:00Z"),
        ({"format": "iso_offset"}, "2024-05-01T10:30:00+00:00", "2024-05-03T07:00:00+00:00"),
        ({"format": "iso_ms", "end": "inclusive"}, "2024-05-01T10:30:00.000Z", "2024-05-03T06:59:59.999Z"),
        ({"format": "epoch_s"}, 1714559400, 1714719600),
        ({"format": "epoch_ms", "end": "inclusive"}, 1714559400000, 1714719599999),
        ({"format": "date", "end": "inclusive"}, "2024-05-01", "2024-05-03"),
        ({"format": "date"}, "2024-05-01", "2024-05-04"),
        ({"format": "hour", "end": "inclusive"}, "20240501T10", "20240503T06"),
    ],
)
def test_each_format_and_end(spec, since, until):
    assert WindowSpec.parse({"since_param": "a", "until_param": "b", **spec}).params(A, B) == {
        "a": since,
        "b": until,
    }


def test_step_slices_at_multiples_of_the_step_so_day_requests_never_overlap():
    w = WindowSpec.parse({"format": "date", "end": "inclusive", "step": "1d"})
    slices = w.slices(A, B)
    assert [(a.isoformat(), b.isoformat()) for a, b in slices] == [
        ("2024-05-01T10:30:00+00:00", "2024-05-02T00:00:00+00:00"),
        ("2024-05-02T00:00:00+00:00", "2024-05-03T00:00:00+00:00"),
        ("2024-05-03T00:00:00+00:00", "2024-05-03T07:00:00+00:00"),
    ]
    assert [w.params(a, b)["since"] for a, b in slices] == ["2024-05-01", "2024-05-02", "2024-05-03"]
    assert [w.params(a, b)["until"] for a, b in slices] == ["2024-05-01", "2024-05-02", "2024-05-03"]


@pytest.mark.parametrize(
    "spec, mentions",
    [
        ({"format": "unix"}, "source.window.format"),
        ({"end": "open"}, "source.window.end"),
        ({"format": "date", "step": "6h"}, "multiple of the granularity"),
        ({"filter_field": "user_id"}, "filter_field"),
        ({"since": "x"}, "unknown key 'since'"),
    ],
)
def test_bad_window_specs_name_their_key(spec, mentions):
    with pytest.raises(SettingsError, match=mentions):
        WindowSpec.parse(spec)
