"""The run lock: one writer at a time (a PostgreSQL session advisory lock, or a file lock beside the SQLite file).

Both are released by the operating system or the server when the holder dies, so a killed run
never blocks the next one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from ..errors import RunInProgress
from .store import Store

ADVISORY_KEY = 0x6576_7069_7065  # "evpipe"


@contextmanager
def run_lock(store: Store, wait: bool = False) -> Iterator[None]:
    """Hold the run lock for the block; without ``wait``, ``RunInProgress`` when another run holds it."""
    if store.is_sqlite:
        from filelock import FileLock, Timeout

        lock = FileLock(f"{store.sqlite_path}.lock")
        try:
            lock.acquire(timeout=-1 if wait else 0)
        except Timeout:
            raise RunInProgress(store.running_run_id()) from None
        try:
            yield
        finally:
            lock.release()
        return
    conn = store.engine.connect()
    try:
        fn = func.pg_advisory_lock if wait else func.pg_try_advisory_lock
        got = conn.execute(select(fn(ADVISORY_KEY))).scalar()
        conn.commit()
        if not wait and not got:
            raise RunInProgress(store.running_run_id())
        try:
            yield
        finally:
            try:
                conn.execute(select(func.pg_advisory_unlock(ADVISORY_KEY)))
                conn.commit()
            except OperationalError:
                pass  # the server already dropped the session, and the lock with it
    finally:
        conn.close()
