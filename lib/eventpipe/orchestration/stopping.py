"""SIGTERM and SIGINT: a run under way stops at once and is recorded before the process exits.

The handler never raises inside a run's bookkeeping (its record, report, ledger, index), where an exception
could leave half of it written: there it only notes the signal. During a stage it kills the stage's kernel
(its process group), so papermill returns within a second with the executed notebook saved; the runner then
records the run ``failed`` with class ``terminated`` (banner, HTML, ``metrics.json``, ledger and index entry)
and the command exits 128 + the signal's number (143 for SIGTERM, 130 for SIGINT). Between stages the run
stops before the next one starts. Outside a run (waiting for the lock, starting a kernel) the handler raises
``Terminated`` at once: nothing is recorded because nothing started.

The same signal a second time ends the process at once (the next command then marks the run interrupted).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from ..errors import Terminated

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stop:
    """The process's stop request: which signal came, and what to do when it comes (see the module)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._recording = 0
        self._kernel_pid: int | None = None
        self._exit_when_idle = False

    def install(self, exit_when_idle: bool = False) -> None:
        """``exit_when_idle``: outside a run, end the process quietly instead of raising (a pool's worker,
        whose idle loop would print the exception as a traceback)."""
        self._exit_when_idle = exit_when_idle
        for s in SIGNALS:
            signal.signal(s, self._handle)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def error(self, run_id: str | None = None, stage: str | None = None) -> Terminated:
        return Terminated(self.name or "SIGTERM", run_id, stage, self.signum or signal.SIGTERM)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        # no logging here: a handler runs between two bytecodes of whatever the main thread does
        if self.signum is not None:
            if signum == self.signum:  # asked twice: end now
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return  # another signal while already stopping (a parent passing SIGTERM on after a Ctrl-C)
        self.signum = signum
        if self._kernel_pid is not None:
            _kill_group(self._kernel_pid)
        elif not self._recording:
            if self._exit_when_idle:
                os._exit(128 + signum)
            raise self.error()

    def check(self) -> None:
        """Raise ``Terminated`` if a signal came (the runner asks before each stage)."""
        if self.signum is not None:
            raise self.error()

    @contextmanager
    def recording(self) -> Iterator[None]:
        """A run's bookkeeping: a signal is only noted, the runner acts on it at its next step."""
        self._recording += 1
        try:
            yield
        finally:
            self._recording -= 1

    @contextmanager
    def stage(self, kernel_pid: int | None) -> Iterator[None]:
        """A stage executing in the kernel ``kernel_pid``: a signal kills that kernel."""
        self.check()
        self._kernel_pid = kernel_pid
        try:
            yield
        finally:
            self._kernel_pid = None


def _kill_group(pid: int) -> None:
    """The kernel and whatever it started (it leads a session of its own), never this process's own group."""
    try:
        group = os.getpgid(pid)
        if group != os.getpgrp():
            os.killpg(group, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # gone already


STOP = Stop()


def install_in_worker() -> None:
    """A backfill worker process's stop handlers (a function, so the pool can name it to the worker)."""
    STOP.install(exit_when_idle=True)
