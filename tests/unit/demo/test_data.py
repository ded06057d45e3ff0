"""The demo API's data: the same events for the same seed and hour, none later than the data's clock."""

from __future__ import annotations

from datetime import timedelta

from eventpipe.demo.data import DemoConfig, DemoData
from support import HOUR, NOW


def _latest(data: DemoData) -> int:
    return max(g.sort_ms for g in data.events(NOW - 3 * HOUR, NOW + 3 * HOUR))


def test_the_stream_ends_at_the_pinned_clock(clock):
    data = DemoData(DemoConfig(start=NOW - 3 * HOUR, events_per_hour=120))
    assert _latest(data) < NOW.timestamp() * 1000
    clock.advance(HOUR)  # the test's clock moves: events of the next hour appear
    assert _latest(data) >= NOW.timestamp() * 1000


def test_an_explicit_now_wins_over_the_clock():
    earlier = NOW - timedelta(minutes=45)
    data = DemoData(DemoConfig(start=NOW - 3 * HOUR, events_per_hour=120, now=earlier))
    assert _latest(data) < earlier.timestamp() * 1000


def test_the_same_seed_and_hours_give_the_same_events():
    a, b = (DemoData(DemoConfig(start=NOW - 3 * HOUR, seed=7)) for _ in range(2))
    assert [g.body for g in a.events(NOW - 3 * HOUR, NOW)] == [g.body for g in b.events(NOW - 3 * HOUR, NOW)]
