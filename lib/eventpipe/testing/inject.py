"""Fault-injection points for the reliability tests (inactive unless ``EVENTPIPE_INJECT`` is set).

``EVENTPIPE_INJECT="load.before_commit=sleep:30"`` makes the named point sleep,
``=exit`` end the process at once (like a crash or SIGKILL), ``=raise`` raise, and
``=pgsleep:N`` run a slow statement on the load's connection, and ``=enospc`` raise the
``OSError`` of a full disk (``[Errno 28] No space left on device``) for ``path``.
When ``EVENTPIPE_INJECT_MARK`` names a file, reaching the point first writes it,
so a test knows exactly where the process is before it kills it. When
``EVENTPIPE_INJECT_ARMED`` names a file, the fault fires only if that file exists,
and removes it: one shot across processes (an orchestrator's retry then succeeds).
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path


class InjectedFault(RuntimeError):
    """Raised at an injection point set to ``raise``."""


def checkpoint(name: str, conn: object | None = None, path: object | None = None) -> None:
    spec = os.environ.get("EVENTPIPE_INJECT")
    if not spec:
        return
    for entry in spec.split(","):
        point, _, action = entry.partition("=")
        if point.strip() != name:
            continue
        armed = os.environ.get("EVENTPIPE_INJECT_ARMED")
        if armed:  # fire only while this file exists, once across processes: the retry then succeeds
            try:
                os.unlink(armed)
            except FileNotFoundError:
                return
        mark = os.environ.get("EVENTPIPE_INJECT_MARK")
        if mark:
            Path(mark).write_text(name)
        kind, _, arg = action.strip().partition(":")
        if kind == "sleep":
            time.sleep(float(arg or 60))
        elif kind == "exit":
            os._exit(int(arg or 137))
        elif kind == "pgsleep" and conn is not None:  # a slow statement, for statement_timeout
            from sqlalchemy import text

            conn.execute(text("SELECT pg_sleep(:s)"), {"s": float(arg or 5)})  # type: ignore[attr-defined]
        elif kind == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), None if path is None else str(path))
        elif kind == "raise":
            raise InjectedFault(f"injected fault at {name}")
