"""The stop request: outside a run a signal stops the command at once; inside a run's bookkeeping it is only
noted; during a stage it kills the stage's kernel (a real child process here) and nothing is raised."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from eventpipe.errors import Terminated
from eventpipe.orchestration.stopping import Stop


@pytest.fixture
def stop():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    s = Stop()
    s.install()
    yield s
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_outside_a_run_a_signal_stops_at_once_with_128_plus_its_number(stop):
    with pytest.raises(Terminated) as e:
        os.kill(os.getpid(), signal.SIGINT)
    assert e.value.exit_code == 130 and "no run was under way" in str(e.value)


def test_inside_a_runs_bookkeeping_a_signal_is_noted_and_acted_on_at_the_next_step(stop):
    with stop.recording():
        os.kill(os.getpid(), signal.SIGTERM)  # nothing raised mid-write
        assert stop.requested and stop.name == "SIGTERM"
        with pytest.raises(Terminated) as e:
            with stop.stage(None):  # the next stage does not start
                pass
    assert e.value.exit_code == 143


def test_during_a_stage_a_signal_kills_the_kernels_process_group_and_raises_nothing(stop):
    kernel = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )  # like a Jupyter kernel: a session of its own
    try:
        with stop.recording(), stop.stage(kernel.pid):
            os.kill(os.getpid(), signal.SIGTERM)
        assert kernel.wait(timeout=10) == -signal.SIGKILL
    finally:
        if kernel.poll() is None:
            kernel.kill()
    with pytest.raises(Terminated):
        stop.check()
