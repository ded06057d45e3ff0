"""The demo API's fault plan: which faults exist, which request gets one, and how each is served."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import TYPE_CHECKING

from ..errors import SettingsError
from . import styles

if TYPE_CHECKING:
    from .server import Handler

FAULT_KINDS = (
    "429",
    "429date",
    "500",
    "502",
    "503",
    "504",
    "slow",
    "drop",
    "truncate",
    "missing_items",
    "missing_has_more",
    "repeat",
)


@dataclass
class FaultPlan:
    """Every ``every``-th request gets the next fault of ``kinds`` (deterministic for a sequential client)."""

    kinds: tuple[str, ...] = ()
    every: int = 3
    retry_after: str = "1"
    slow_s: float = 2.0
    limit: int | None = None  # stop injecting after this many faults
    _count: int = 0
    _injected: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> str | None:
        with self._lock:
            self._count += 1
            if not self.kinds or self._count % self.every:
                return None
            if self.limit is not None and self._injected >= self.limit:
                return None
            kind = self.kinds[self._injected % len(self.kinds)]
            self._injected += 1
            return kind


def parse_faults(spec: str) -> tuple[str, ...]:
    """``demo-api --faults 429,drop`` -> the kinds, each checked against ``FAULT_KINDS``."""
    kinds = tuple(k.strip() for k in spec.split(",") if k.strip())
    bad = [k for k in kinds if k not in FAULT_KINDS]
    if bad:
        raise SettingsError(f"unknown fault {bad[0]!r}: choose from {', '.join(FAULT_KINDS)}")
    return kinds


def serve_fault(handler: Handler, fault: str) -> bool:
    """Serve ``fault`` on this request; True when the response is complete (False: answer as usual)."""
    plan = handler.server.faults
    if fault in ("429", "429date"):
        ra = (
            plan.retry_after
            if fault == "429"
            else formatdate(time.time() + float(plan.retry_after), usegmt=True)
        )
        handler.answer_error(429, "slow down", {"Retry-After": ra})
        return True
    if fault in ("500", "502", "503", "504"):
        handler.answer_error(int(fault), "upstream trouble")
        return True
    if fault == "slow":
        time.sleep(plan.slow_s)
        return False
    if fault == "drop":
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        handler.wfile.write(b'{"items":[{"user_id":')
        handler.wfile.flush()
        handler.connection.shutdown(socket.SHUT_RDWR)
        handler.close_connection = True
        return True
    if fault == "truncate":
        if handler.server.style in styles.EXPORTS:
            return False  # the export itself, cut short (``Handler._export``)
        handler.answer(200, b'{"items":[{"user_id":"u1","event":"click"')
        return True
    return False
