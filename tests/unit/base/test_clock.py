"""The pipeline's "now": the wall clock, or the instant ``EVENTPIPE_NOW`` pins (the tests pin ``support.NOW``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from eventpipe import clock as pipeline  # ``clock`` is the tests' fixture
from eventpipe.errors import SettingsError
from support import NOW


def test_the_tests_run_at_the_pinned_instant(clock):
    assert clock.now == NOW
    assert pipeline.now() == NOW


def test_advancing_the_test_clock_moves_now_for_everything_that_reads_it(clock):
    clock.advance(timedelta(seconds=90))
    assert pipeline.now() == NOW + timedelta(seconds=90)


def test_without_eventpipe_now_it_is_the_wall_clock(monkeypatch):
    monkeypatch.delenv(pipeline.ENV)
    before = datetime.now(timezone.utc)
    assert before <= pipeline.now() <= datetime.now(timezone.utc)


@pytest.mark.parametrize(
    "pinned", ["2025-06-02T14:30:00+02:00", "2025-06-02T12:30:00", "2025-06-02T12:30:00Z"]
)
def test_an_offset_or_none_both_name_a_utc_instant(monkeypatch, pinned):
    monkeypatch.setenv(pipeline.ENV, pinned)
    assert pipeline.now() == NOW and pipeline.now().tzinfo == timezone.utc


def test_a_bad_eventpipe_now_is_one_clear_settings_error(monkeypatch):
    monkeypatch.setenv(pipeline.ENV, "yesterday")
    with pytest.raises(SettingsError, match="EVENTPIPE_NOW: 'yesterday' is not an ISO 8601"):
        pipeline.now()
