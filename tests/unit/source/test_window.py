"""How a window is sent: each instant format, inclusive ends at their granularity, step slicing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

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
        # PostHog's after keeps what is later than it: a microsecond earlier keeps an event at since
        ({"start": "exclusive"}, "2024-05-01T10:29:59.999999Z", "2024-05-03T07:00:00Z"),
        ({"format": "epoch_s", "start": "exclusive"}, 1714559399, 1714719600),
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


ARRIVAL = {"clock": "arrival", "horizon": "30m", "arrival_field": "server_upload_time"}


def test_the_event_clock_asks_for_the_window_itself_and_filters_only_with_filter_field():
    spec = WindowSpec.parse({})
    assert spec.clock == "event" and spec.horizon == timedelta(0)
    for kind in ("incremental", "backfill", "airflow"):
        assert spec.request_window(kind, A, B) == (A, B)
        assert spec.kept_window(kind, A, B) is None
    assert WindowSpec.parse({"filter_field": "timestamp"}).kept_window("incremental", A, B) == (A, B)


def test_the_arrival_clock_reads_a_window_of_event_time_up_to_its_end_plus_the_horizon():
    spec = WindowSpec.parse(ARRIVAL)
    for kind in ("backfill", "airflow", "manual"):
        assert spec.request_window(kind, A, B) == (A, B + timedelta(minutes=30))
        assert spec.kept_window(kind, A, B) == (A, B)  # each event kept by the window its event time is in


def test_the_arrival_clock_keeps_everything_an_incremental_or_full_run_reads():
    spec = WindowSpec.parse(ARRIVAL)
    for kind in ("incremental", "full"):
        assert spec.request_window(kind, A, B) == (A, B)
        assert spec.kept_window(kind, A, B) is None


def test_the_horizon_defaults_to_an_hour_on_the_arrival_clock():
    assert WindowSpec.parse({"clock": "arrival"}).horizon == timedelta(hours=1)


def test_a_window_whose_late_arrivals_may_still_come_is_refused():
    spec = WindowSpec.parse(ARRIVAL)
    spec.check_complete("backfill", A, B, B + timedelta(minutes=30))  # settled: fine
    spec.check_complete("incremental", A, B, A)  # an arrival window needs nothing more
    with pytest.raises(
        SettingsError,
        match=r"needs the arrivals up to 2024-05-03T07:30:00Z .* end it by 2024-05-03T06:59:00Z",
    ):
        spec.check_complete("backfill", A, B, B + timedelta(minutes=29))


@pytest.mark.parametrize(
    "spec, said",
    [
        ({"clock": "upload"}, "source.window.clock 'upload': use event"),
        ({"horizon": "1h"}, "source.window.horizon applies to clock: arrival only"),
        ({"clock": "arrival", "horizon": "soon"}, "source.window.horizon: 'soon' is not a duration"),
        ({"clock": "arrival", "arrival_field": "a..b"}, "source.window.arrival_field 'a..b'"),
        ({"clock": "arrival", "arrival_field": 5}, "source.window.arrival_field 5"),
    ],
)
def test_a_bad_clock_setting_is_one_line(spec, said):
    with pytest.raises(SettingsError) as e:
        WindowSpec.parse(spec)
    assert said in str(e.value) and "\n" not in str(e.value)
