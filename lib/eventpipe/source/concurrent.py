"""Several requests in flight at once (``api.concurrency``), pages handed on in the order a sequential run reads them.

A far-away API spends 100-300 ms on each page; one request after another, the extract then waits on the
network for most of a run. This module keeps up to ``api.concurrency`` requests in flight, in two ways,
both of which leave the pages' order, and so last-duplicate-wins and the table, exactly as ``1`` has them:

- **slices**: the window's slices (``source.window.step``) are read by up to ``concurrency`` slice runners
  at once. The writer takes slice after slice; a runner ahead of it keeps its pages in a ``SliceBuffer``
  (a few in memory, the rest spilled to an unlinked file next to the run's raw parts), so memory holds at
  most ``concurrency`` slices' worth of a few pages, whatever their size.
- **pages ahead**: a paginator that can say its next request before it has the answer (page numbers;
  offsets, assuming full pages) has the next pages of its slice fetched ahead. A page fetched ahead is used
  only when the request the real previous answer leads to is exactly the one it was fetched for; otherwise
  it is dropped and asked again. Pages fetched past the last one are dropped unread.

Threads, not asyncio: the request path (requests + urllib3 with the deadline adapter, streamed bodies,
ijson, tenacity's retries) is blocking code that already releases the GIL while it waits on a socket, which
is where a slow API's time goes. A thread pool runs that one path unchanged, each thread with a session of
its own; an asyncio client would be a second HTTP stack to keep equal to the first in limits, deadlines,
streaming and auth.

Everything the workers share goes through ``Gate``: the pause a ``Retry-After`` asks for (one worker's
429 holds every worker back), one request budget for all (``api.min_interval_s``,
``api.max_requests_per_s``), and the stop of a failed extract, which also cuts the requests in flight.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .deadline import Watch

MEMORY_PAGES = 2  # pages a slice runner ahead of the writer keeps in memory before it spills to disk


class Cancelled(Exception):
    """The extract is stopping (a page failed for good, or the writer stopped): no more requests."""


class Gate:
    """What every worker passes before a request: the shared pause, the shared budget, the stop."""

    def __init__(self, interval_s: float = 0.0):
        self._lock = threading.Lock()
        self._interval = interval_s
        self._next = 0.0  # earliest start of the next request (the budget)
        self._paused_until = 0.0
        self._stop = threading.Event()
        self._watches: set[Watch] = set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def wait(self) -> None:
        """Return when this worker may send a request; raise ``Cancelled`` once the extract stops."""
        while True:
            if self._stop.is_set():
                raise Cancelled("the extract is stopping")
            with self._lock:
                now = time.monotonic()
                start = max(now, self._next, self._paused_until)
                if start <= now:
                    self._next = now + self._interval
                    return
            self._stop.wait(min(start - now, 0.5))  # woken early by a stop; a pause may have grown meanwhile

    def pause(self, seconds: float) -> None:
        """No worker sends a request for ``seconds`` from now (a server's ``Retry-After``)."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def sleep(self, seconds: float) -> None:
        """A retry's backoff, cut short (by ``Cancelled``) when the extract stops."""
        if self._stop.wait(seconds):
            raise Cancelled("the extract is stopping")

    def track(self, watch: Watch) -> None:
        with self._lock:
            self._watches.add(watch)
            stopped = self._stop.is_set()
        if stopped:
            watch.fire()

    def untrack(self, watch: Watch) -> None:
        with self._lock:
            self._watches.discard(watch)

    def stop(self) -> None:
        """Refuse every later request and cut those in flight (their sockets are shut down)."""
        self._stop.set()
        with self._lock:
            watches = list(self._watches)
        for watch in watches:
            watch.fire()


class SliceBuffer:
    """One slice's pages between its runner and the writer, in order: ``MEMORY_PAGES`` in memory, the rest
    in an unlinked temporary file (gone with the process, even on SIGKILL).

    All buffers of one extract share a condition, so the writer waiting on one slice wakes when any runner
    fails, and the extract fails at once instead of when the writer reaches the failed slice.
    """

    def __init__(self, cond: threading.Condition, failure: list[BaseException], spill_dir: Path | None):
        self._cond = cond
        self._failure = failure  # the first failure of any runner of this extract
        self._spill_dir = spill_dir
        self._entries: deque[tuple[Any, ...]] = deque()
        self._in_memory = 0
        self._file: Any = None
        self._size = 0
        self.done = False

    def put(self, chunks: list[bytes], counts: list[int]) -> None:
        with self._cond:
            spill = self._in_memory >= MEMORY_PAGES
        if not spill:
            entry: tuple[Any, ...] = ("mem", chunks, counts)
        else:
            if self._file is None:
                self._file = tempfile.TemporaryFile(dir=self._spill_dir, prefix="eventpipe-spill-")
            data = pickle.dumps((chunks, counts), protocol=pickle.HIGHEST_PROTOCOL)
            self._file.write(data)
            self._file.flush()
            entry = ("disk", self._size, len(data))
            self._size += len(data)
        with self._cond:
            self._entries.append(entry)
            self._in_memory += entry[0] == "mem"
            self._cond.notify_all()

    def finish(self) -> None:
        with self._cond:
            self.done = True
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            if not self._failure:
                self._failure.append(error)
            self._cond.notify_all()

    def drain(self) -> Iterator[tuple[list[bytes], list[int]]]:
        """The slice's pages in order, as they come; raises the extract's first failure as soon as there is one."""
        while True:
            with self._cond:
                while not self._entries and not self.done and not self._failure:
                    self._cond.wait()
                if self._failure:
                    raise self._failure[0]
                if not self._entries:
                    return
                entry = self._entries.popleft()
                self._in_memory -= entry[0] == "mem"
            if entry[0] == "mem":
                yield entry[1], entry[2]
            else:
                _, offset, length = entry
                yield pickle.loads(
                    os.pread(self._file.fileno(), length, offset)
                )  # our own bytes, just written

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
