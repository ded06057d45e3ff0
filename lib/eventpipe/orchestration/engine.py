"""papermill's nbclient engine, writing the executed notebook less often.

papermill writes the whole output notebook as each cell starts and as it ends (about 80 writes a run,
each serialising every output so far: ~0.4 s of the runner's time per run, on its critical path). Here
the notebook is written as it starts and as it ends, as papermill does, and in between at most every
``SAVE_EVERY`` seconds: a write that comes sooner is deferred to that moment (a timer on the event loop
nbclient runs each cell on, in this thread, so it never races nbclient's own changes to the notebook). So the file on disk is
never more than ``SAVE_EVERY`` seconds behind the notebook while a cell runs (its outputs included: papermill
itself writes them only every 30 s), and a run that is killed outright leaves a notebook showing the cell it
was in and its outputs so far, unless they are younger than that.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jupyter_core.utils import ensure_event_loop
from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

NAME = "eventpipe"
SAVE_EVERY = 0.5  # seconds


class ThrottledSaves(NotebookExecutionManager):
    """Writes the notebook at its start and end; between them at most every ``SAVE_EVERY`` seconds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._written = 0.0  # monotonic time of the last write
        self._timer: asyncio.TimerHandle | None = None
        self._final = False
        self._failed: Exception | None = None  # the deferred write's failure, for the next save to raise
        super().__init__(*args, **kwargs)

    def _write(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        NotebookExecutionManager.save(self)
        self._written = time.monotonic()

    def _deferred(self) -> None:
        """The timer's write. It must not raise on the loop (asyncio would only log it): a failure (the
        folder deleted, the disk full) is kept, and the next save writes at once, raising as papermill's would."""
        self._timer = None
        try:
            self._write()
        except Exception as e:  # noqa: BLE001 - raised again by the next save, from papermill's own call
            self._failed = e

    def save(self, **kwargs: Any) -> None:
        wait = self._written + SAVE_EVERY - time.monotonic()
        if self._final or wait <= 0 or self._failed is not None:
            self._failed = None
            self._write()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # papermill calls it between cells: the loop nbclient runs each cell on
            loop = ensure_event_loop()
        if self._timer is None:
            self._timer = loop.call_later(wait, self._deferred)

    def autosave_cell(self) -> None:
        """Called by papermill for each message a running cell gets (an output, a status). papermill's own
        writes only if 30 s passed since the last write, so an output that came after the cell's start had
        been written stayed out of the file until the cell ended; here it is written within ``SAVE_EVERY``,
        like any other change."""
        if self.autosave_cell_every:  # 0: papermill's switch for writes while a cell runs
            self.save()

    def notebook_start(self, **kwargs: Any) -> None:
        self._written = 0.0
        super().notebook_start(**kwargs)

    def notebook_complete(self, **kwargs: Any) -> None:
        self._final = True  # its own write, and anything after it, goes to disk at once
        super().notebook_complete(**kwargs)


class ThrottledEngine(NBClientEngine):
    """``NBClientEngine`` with ``ThrottledSaves`` (papermill builds the manager in ``execute_notebook``)."""

    @classmethod
    def execute_notebook(  # type: ignore[override]
        cls,
        nb: Any,
        kernel_name: str,
        output_path: str | None = None,
        progress_bar: bool = True,
        log_output: bool = False,
        autosave_cell_every: int = 30,
        **kwargs: Any,
    ) -> Any:
        nb_man = ThrottledSaves(
            nb,
            output_path=output_path,
            progress_bar=progress_bar,
            log_output=log_output,
            autosave_cell_every=autosave_cell_every,
        )
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        return nb_man.nb


def register() -> str:
    """The engine, registered with papermill under ``NAME`` (once is enough; again is harmless)."""
    papermill_engines.register(NAME, ThrottledEngine)
    return NAME
