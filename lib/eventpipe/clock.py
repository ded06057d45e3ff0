"""The pipeline's "now": the wall clock, or the instant ``EVENTPIPE_NOW`` pins for reproducible runs.

Everything that decides *what* a run reads or rejects asks this clock: the incremental window's end
(``window.settle`` before now), ``quality.max_future``, replay, ``source check`` and the demo API's live
edge. With ``EVENTPIPE_NOW=2025-06-02T12:30:00Z`` a run (and every child it starts: kernel, scheduler
tick, worker) reads and rejects the same records in any hour it is started. Bookkeeping times (when a
run started, when a row was loaded, run ids) and waiting (``Retry-After``, the scheduler's ticks)
always use the real clock.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from functools import lru_cache

from .errors import SettingsError
from .settings import parse_instant

ENV = "EVENTPIPE_NOW"


def now() -> datetime:
    """The current instant in UTC, or the one ``EVENTPIPE_NOW`` names (it stays fixed while pinned)."""
    pinned = os.environ.get(ENV, "").strip()
    return _pinned(pinned) if pinned else datetime.now(timezone.utc)


@lru_cache(maxsize=16)
def _pinned(text: str) -> datetime:
    try:
        return parse_instant(text)
    except ValueError as e:
        raise SettingsError(f"{ENV}: {e}") from None
