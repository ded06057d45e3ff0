"""Counts in words agree with their number."""

from eventpipe.words import counted


def test_counted_agrees_with_its_number():
    assert counted(1, "attempt") == "1 attempt"
    assert counted(2, "attempt") == "2 attempts"
    assert counted(0, "record") == "0 records"
    assert counted(20_524, "record") == "20,524 records"
    assert counted(1, "entry") == "1 entry" and counted(3, "entry") == "3 entries"
