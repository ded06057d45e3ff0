"""``cli.exiting``: the command-line process ends at once, without losing what it wrote or its exit code."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from eventpipe.cli.exiting import exit_now

ROOT = Path(__file__).resolve().parents[3]


def test_the_fast_exit_keeps_the_output_the_log_the_atexit_handlers_and_the_code(tmp_path):
    """Block-buffered stdout through a pipe (5,000 lines: the last ones still in the buffer at the end), a log file handler that only ``logging.shutdown`` closes, and an
    ``atexit`` handler: all done before ``os._exit``; the exit code is the one given."""
    log, mark = tmp_path / "run.log", tmp_path / "atexit"
    script = f"""
import atexit, logging, sys
sys.path.insert(0, {str(ROOT / "lib")!r})
from eventpipe.cli.exiting import exit_now
handler = logging.FileHandler({str(log)!r})
logging.getLogger().addHandler(handler)
logging.getLogger().warning("logged before the exit")
atexit.register(lambda: open({str(mark)!r}, "w").write("ran"))
for n in range(5000):
    print("line", n)
sys.stderr.write("to stderr")
exit_now(5)
"""
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout block-buffered
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=buffered
    )
    assert done.returncode == 5
    assert done.stdout == "".join(f"line {n}\n" for n in range(5000))
    assert done.stderr == "to stderr"
    assert log.read_text() == "logged before the exit\n"
    assert mark.read_text() == "ran"


def test_none_exits_0_through_the_entry_point(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "run_pipeline.py"), "params"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().splitlines()  # the whole listing, flushed
    bad = subprocess.run(
        [sys.executable, str(ROOT / "run_pipeline.py"), "no-such-command"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_with_another_thread_alive_it_exits_the_ordinary_way():
    """A thread that may still have work: ``sys.exit``, so Python joins it (here, in-process: SystemExit)."""
    release = threading.Event()
    worker = threading.Thread(target=release.wait, name="still-working")
    worker.start()
    try:
        with pytest.raises(SystemExit) as ended:
            exit_now(3)
        assert ended.value.code == 3
    finally:
        release.set()
        worker.join()
