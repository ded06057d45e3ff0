"""Early load: the clean rows ``COPY``-ed into the destination while the transform is still running.

A run's load spends most of its time in PostgreSQL's ``COPY`` into the indexed table, and the transform
leaves a finished clean file behind it part after part (last part first: ``core.process`` calls
``on_final`` once no later part can change a file). So while the transform goes on, a thread of the
kernel opens the load's transaction and ``COPY``-s each finished file straight into the destination,
as the load's empty-range path would. Nothing is committed there: the load stage takes the open
transaction over (``take``), checks it holds exactly the clean files it would load (their names, sizes
and modification times, and the row count the quality gate passed), and writes the dead letters, the
watermark and the run record in it before one commit, as it does without it. A failed gate, a failed
stage, a killed kernel or another run discards the transaction: PostgreSQL rolls it back and the rows
were never visible to anyone.

The direct ``COPY`` is only right when none of the run's keys is stored yet (every row an insert):
the first file's time range is checked as the load's empty-range path checks the whole batch's, and a
key that is stored after all stops the ``COPY`` with a unique violation. Either way the transaction
is rolled back and the load stage loads the run itself, by its usual paths (staging and upsert); so
is a run whose files changed, whose rows do not add up, or whose early load failed for any other
reason (the database went away, a statement timeout, an idle-in-transaction timeout). Whatever
happens here, the table ends as the load stage alone would leave it.

It runs only on PostgreSQL (SQLite has one writer, and its load holds it for the whole load), when the
run's notebooks share one kernel (``runner.shared_kernel``, or stage functions called in one process),
never for a notebook run by hand, a stage run as an Airflow task, or a replay, and only with
``runner.load_during_transform`` (the default).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Connection, RootTransaction

from ..settings import Settings
from .loaders import PostgresLoader
from .store import Store
from .tables import utcnow

log = logging.getLogger(__name__)

IDLE_LIMIT = "10min"


def _signature(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


class EarlyLoad:
    """One run's early ``COPY``: a thread, its connection and open transaction, the files it copied."""

    def __init__(self, settings: Settings, run_path: Path, run_id: str) -> None:
        self.run_path = run_path
        self.run_id = run_id
        self.store = Store(settings)
        self.loader = PostgresLoader(self.store)
        self.loaded_at: datetime = utcnow()  # every row's ``loaded_at``, as one load stamps them all
        self.copied: dict[str, tuple[int, int]] = {}  # clean file -> (size, mtime_ns) when it was copied
        self.rows = 0
        self.seconds = 0.0  # spent reading, encoding and copying files
        self.waited = 0.0  # the load stage's wait for the last files to be copied
        self.stopped: str | None = None  # why it stopped (the load stage then loads the run itself)
        self.conn: Connection | None = None
        self.trans: RootTransaction | None = None
        self._files: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        try:
            # here, not in the thread: the load stage creates the schema too, and a table first made by two
            # connections at once can fail in one of them (the early load then stopped, for nothing)
            self.store.create_schema()
        except Exception as e:  # noqa: BLE001 -- the load stage meets the same problem and says so
            self._stop(f"{type(e).__name__} while reading the schema")
        self._thread = threading.Thread(target=self._work, name="eventpipe-early-load", daemon=True)
        self._thread.start()

    # -- the transform's side --------------------------------------------------------------------

    def file_final(self, path: Path) -> None:
        """The transform will not change this clean file again."""
        self._files.put(path)

    def transform_done(self) -> None:
        """Every clean file was handed over; the thread finishes the queue and waits for the load."""
        self._files.put(None)

    # -- the thread --------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            path = self._files.get()
            if path is None:
                return
            if self.stopped is not None:
                continue
            started = time.perf_counter()
            try:
                self._copy(path)
            except Exception as e:  # noqa: BLE001 -- any failure: roll back, the load stage loads the run
                first = (str(e).strip().splitlines() or [""])[0][:200]
                self._stop(f"{type(e).__name__}: {first}")
            finally:
                self.seconds += time.perf_counter() - started

    def _copy(self, path: Path) -> None:
        signature = _signature(path)
        loader = self.loader
        if pq.read_metadata(path).num_rows:
            if self.conn is None:  # the first file with rows: its range is checked as the load's would be
                mm = pc.min_max(pq.read_table(path, columns=["timestamp"])["timestamp"]).as_py()
                self._open()
                assert self.conn is not None
                if loader.range_taken(self.conn, mm["min"], mm["max"]):
                    self._stop("the destination already holds rows in the run's time range")
                    return
            assert self.conn is not None
            ready = loader._part_table(str(path))
            assert ready is not None
            encoded = loader.encode(ready, loader.lineage(self.run_id, self.loaded_at))
            loader.copy_encoded(self.conn, loader.analytics, encoded)
            self.rows += ready.num_rows
        self.copied[str(path)] = signature

    def _open(self) -> None:
        self.conn = self.store.engine.connect()
        self.trans = self.conn.begin()
        self.loader.begin(self.conn)
        # a kernel that hangs between its transform and its load must not hold the rows' locks for ever
        self.conn.exec_driver_sql(f"SET LOCAL idle_in_transaction_session_timeout = '{IDLE_LIMIT}'")

    def _stop(self, why: str) -> None:
        if self.stopped is None:
            self.stopped = why
            log.info("loading during the transform stopped (%s); the load stage loads the run itself", why)
        self._rollback()

    def _rollback(self) -> None:
        conn, self.conn, self.trans = self.conn, None, None
        if conn is not None:
            try:
                conn.close()  # rolls the open transaction back
            except Exception:  # noqa: BLE001 -- a dead connection: the server rolled it back already
                log.debug("closing the early load's connection failed", exc_info=True)

    # -- the load's side ----------------------------------------------------------------------------

    def wait(self) -> None:
        self._thread.join()

    def covers(self, clean_files: list[str]) -> str | None:
        """None when the transaction holds exactly ``clean_files`` as they are now and is still open on
        the server; else why not."""
        if self.stopped is not None:
            return self.stopped
        if self.conn is not None:
            try:
                self.conn.exec_driver_sql("SELECT 1")
            except Exception as e:  # noqa: BLE001 -- e.g. the server ended the idle session
                return f"its transaction is gone ({type(e).__name__})"
        if set(clean_files) != set(self.copied):
            return f"it copied {len(self.copied)} clean files of {len(clean_files)}"
        for f in clean_files:
            try:
                if _signature(Path(f)) != self.copied[f]:
                    return f"clean file {Path(f).name} changed after it was copied"
            except OSError as e:
                return f"clean file {Path(f).name}: {e.strerror}"
        return None

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """The open transaction (one is opened if no file had rows): committed when the block ends,
        rolled back if it raises; the connection is closed either way."""
        if self.conn is None:
            self._open()
        assert self.conn is not None and self.trans is not None
        try:
            yield self.conn
            self.trans.commit()
        finally:
            self.close()

    def close(self) -> None:
        """Roll back whatever was not committed, end the thread (after the file it is copying, if any: the
        files still queued are skipped), let the connections go."""
        if self.stopped is None:
            self.stopped = "closed"
        self._files.put(None)
        self._thread.join()
        self._rollback()
        self.store.dispose()


_current: EarlyLoad | None = None
_lock = threading.Lock()


def start(settings: Settings, run_path: Path, run_id: str) -> EarlyLoad | None:
    """This run's early load (None where it does not apply: not PostgreSQL, or turned off). A previous
    run's that was never taken over is discarded first."""
    global _current
    discard()
    if not settings.runner.load_during_transform or settings.database_url.reveal().startswith("sqlite"):
        return None
    with _lock:
        _current = EarlyLoad(settings, run_path, run_id)
    return _current


def discard() -> None:
    """Roll back and close the early load, if any (its transform or gate failed, another run starts)."""
    global _current
    with _lock:
        early, _current = _current, None
    if early is not None:
        early.close()


def take(run_path: Path, run_id: str, clean_files: list[str]) -> EarlyLoad | None:
    """The early load of this run, its thread finished, when it holds exactly ``clean_files``; otherwise
    None, and whatever was started is rolled back."""
    global _current
    with _lock:
        early, _current = _current, None
    if early is None:
        return None
    early.transform_done()
    started = time.perf_counter()
    early.wait()
    early.waited = time.perf_counter() - started
    why = (
        "another run's"
        if (early.run_path, early.run_id) != (run_path, run_id)
        else early.covers(sorted(clean_files))
    )
    if why is not None:
        if early.stopped is None:
            log.info("the rows copied during the transform are not used (%s): the load stage loads them", why)
        early.close()
        return None
    return early


def metrics(early: EarlyLoad | None) -> dict[str, Any]:
    """What the load's metrics say of it."""
    if early is None:
        return {"rows_copied_during_transform": 0}
    return {
        "rows_copied_during_transform": early.rows,
        "early_copy_s": round(early.seconds, 3),
        "early_copy_wait_s": round(early.waited, 3),
    }
