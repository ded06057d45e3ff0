"""A total deadline per request: status line, headers and body together, however slowly they trickle.

``requests``' timeouts bound each read of the socket, so a server that sends one byte a second keeps a
request alive for ever. ``DeadlineAdapter`` gives every connection a hook that hands its socket to the
request's ``Watch``; when the deadline passes, the watch shuts the socket down, the blocked read returns
at once, and the caller sees ``watch.fired``. Each thread has its own watch, so concurrent workers with
sessions of their own never cut each other's requests.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_active = threading.local()


class Watch:
    """The socket of the request in flight, shut down if the deadline passes first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: Any = None
        self.fired = False
        self.done = False  # the request has ended: the deadline no longer applies

    def attach(self, sock: Any) -> None:
        with self._lock:
            self._sock = sock
            if self.fired:
                _shut(sock)

    def fire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.fired = True
            if self._sock is not None:
                _shut(self._sock)

    def detach(self) -> None:
        with self._lock:
            self._sock = None
            self.done = True


def _shut(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: nothing left to interrupt


def _attach(conn: HTTPConnection) -> None:
    watch = getattr(_active, "watch", None)
    if watch is not None and conn.sock is not None:
        watch.attach(conn.sock)


class _Connection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        super().request(*args, **kwargs)
        _attach(self)


class _TLSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        super().request(*args, **kwargs)
        _attach(self)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class DeadlineAdapter(HTTPAdapter):
    """``requests``' adapter whose connections report their socket to the thread's ``Watch``."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}


def mount(session: Any) -> None:
    """Every request of ``session`` (http and https) goes through a ``DeadlineAdapter``."""
    adapter = DeadlineAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)


class _Watchdog:
    """One daemon thread for every deadline of the process: a heap of (when, watch), woken when it changes."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Watch]] = []
        self._count = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, when: float, watch: Watch) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._count), watch))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="eventpipe-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is watch:
                self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                watch = heapq.heappop(self._heap)[2]
                watch.fire()


_WATCHDOG = _Watchdog()


def _after_fork() -> None:  # a forked child has no watchdog thread and maybe a lock held by none
    global _WATCHDOG
    _WATCHDOG = _Watchdog()


os.register_at_fork(after_in_child=_after_fork)


@contextmanager
def deadline(seconds: float) -> Iterator[Watch]:
    """Shut the request's socket down ``seconds`` from now unless the block has ended by then."""
    watch = Watch()
    previous = getattr(_active, "watch", None)
    _active.watch = watch
    _WATCHDOG.add(time.monotonic() + seconds, watch)
    try:
        yield watch
    finally:
        watch.detach()
        _active.watch = previous
