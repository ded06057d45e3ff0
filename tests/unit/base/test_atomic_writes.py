"""Files written whole or not at all: a write that fails (a full disk) leaves neither half a file nor a ``.tmp``,
and a run's log on a full disk drops its lines quietly instead of printing a traceback per line."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest

from eventpipe.audit.files import write_json
from eventpipe.jsonio import write_text_atomic
from eventpipe.logs import RunLog


def _full(_tmp: Path) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_write_that_fails_keeps_the_old_file_and_leaves_no_temporary_one(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(OSError, match="No space left"):
        write_text_atomic(target, "new", before_replace=_full)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_the_report_write_injection_point_fails_like_a_full_disk_and_cleans_up(tmp_path, monkeypatch):
    monkeypatch.setenv("EVENTPIPE_INJECT", "report.write=enospc")
    with pytest.raises(OSError) as e:
        write_json(tmp_path / "ledger.json", {"a": 1})
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "ledger.json")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.delenv("EVENTPIPE_INJECT")
    write_json(tmp_path / "ledger.json", {"a": 1})
    assert (tmp_path / "ledger.json").read_text() == '{\n  "a": 1\n}'


def test_a_run_log_on_a_full_disk_keeps_its_error_and_prints_no_traceback(capfd):
    handler = RunLog("/dev/full")  # every write: ENOSPC
    logger = logging.getLogger("eventpipe.test.fulldisk")
    logger.addHandler(handler)
    try:
        logger.warning("first line")
        logger.warning("second line")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert handler.error is not None and handler.error.errno == errno.ENOSPC
    assert "Traceback" not in capfd.readouterr().err
