"""RunCounts: the one source of the count names, and the identity every run's counts satisfy."""

from __future__ import annotations

import pytest

from eventpipe.core.counts import RunCounts
from eventpipe.errors import CountsMismatch

GOOD = dict(extracted=10, rejected_transform=2, duplicates=1, transformed=7, passed=6, rejected_quality=1)


def test_counts_that_add_up_pass():
    RunCounts(**GOOD).check()
    RunCounts(
        **GOOD, loaded=6, inserted=4, updated=1, unchanged=1, dead_letters_new=3, dead_letters_seen=0
    ).check()


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"extracted": 11}, "extracted != transformed + rejected_transform + duplicates"),
        ({"passed": 5}, "transformed != passed + rejected_quality"),
        ({"loaded": 5, "inserted": 5, "updated": 0, "unchanged": 0}, "loaded != passed"),
        (
            {"loaded": 6, "inserted": 6, "updated": 1, "unchanged": 0},
            "loaded != inserted + updated + unchanged",
        ),
    ],
)
def test_each_broken_identity_is_named(change, problem):
    counts = RunCounts(**{**GOOD, **change})
    assert problem in counts.problems()
    with pytest.raises(CountsMismatch, match="counts do not add up"):
        counts.check()


def test_rejected_is_both_stages():
    assert RunCounts(**GOOD).rejected == 3


def test_from_mapping_ignores_other_keys_and_missing_load_counts():
    c = RunCounts.from_mapping({**GOOD, "pass_rate": 0.9, "stage": "load"})
    assert c.as_dict() == GOOD and c.loaded is None


def test_with_load_takes_only_the_load_counts():
    load = RunCounts(loaded=6, inserted=6, updated=0, unchanged=0, dead_letters_new=3, dead_letters_seen=0)
    merged = RunCounts(**GOOD).with_load(load)
    assert merged.as_dict() == {**GOOD, **load.load_counts()}
    merged.check()
