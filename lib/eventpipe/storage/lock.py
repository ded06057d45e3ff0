"""The run lock, per window: runs over disjoint windows write at the same time, overlapping ones never do.

Windows are a pipeline's own: runs of two pipelines (their own tables, watermarks and dead letters)
never wait for each other, whatever their windows.

A run claims its window ``[since, until)`` in one short critical section under a
global lock (held for milliseconds, never for the run):

* clear the claims of dead holders, mark runs they left ``running`` as interrupted,
* let the caller decide its window (an incremental run reads the watermark here),
* refuse (or wait) when a live claim overlaps it, else record the claim.

A claim is alive exactly as long as its holder's operating-system resource:
on PostgreSQL a session advisory lock keyed by the claim's row in ``run_locks``
(the server drops it with the session), on SQLite an ``flock`` on the claim's
file in ``<db>.windows/`` (the kernel drops it with the process). A killed
holder therefore never blocks later runs, and a run whose holder died is marked interrupted by the next
command that opens the database (``recover``); a live holder's claim is never taken.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, delete, func, insert, select, text
from sqlalchemy.exc import OperationalError

from ..errors import RunInProgress
from .store import Store
from .tables import as_utc, utcnow

log = logging.getLogger(__name__)

MANAGER_KEY = 0x6576_7069_7065  # "evpipe": the global lock, held only while a claim is checked and recorded
CLAIM_NS = 0x6576_7770  # "evwp": advisory-lock namespace of the claims, keyed (CLAIM_NS, run_locks.id)
EVERYTHING = (datetime(1, 1, 2, tzinfo=timezone.utc), datetime(9999, 12, 30, tzinfo=timezone.utc))
# A claim's session sits idle while its run executes. If the holder's machine is lost (powered off, cut off the
# network), no FIN or RST ever reaches the server, which by default keeps the session (and the claim) for the
# operating system's keepalive time, two hours on Linux. On the holder's own session the server probes after
# 30 s of silence, every 10 s, and drops it after 3 unanswered probes: a lost holder's claim goes within about a
# minute; a live holder's kernel answers the probes by itself, whatever its run is doing.
HOLDER_KEEPALIVE = {"tcp_keepalives_idle": 30, "tcp_keepalives_interval": 10, "tcp_keepalives_count": 3}
# runs that an orchestrator owns between its tasks: no lock is held then, and the orchestrator marks their failures
ORCHESTRATED_KINDS = ("airflow",)


class Windowed(Protocol):
    since: datetime
    until: datetime
    run_id: str


P = TypeVar("P", bound=Windowed)


@dataclass(frozen=True)
class Claim:
    run_id: str
    since: datetime
    until: datetime
    host: str = ""
    pid: int = 0
    pipeline: str = "default"

    def overlaps(self, pipeline: str, since: datetime, until: datetime) -> bool:
        return self.pipeline == pipeline and self.since < until and since < self.until


@dataclass(frozen=True)
class Window:
    """A fixed window to claim (what a backfill partition or an Airflow task has)."""

    since: datetime
    until: datetime
    run_id: str


class WindowLocks:
    """Claims windows for the runs of one database (see the module's docstring)."""

    def __init__(self, store: Store, poll_s: float = 0.5):
        self.store = store
        self.poll_s = poll_s
        self.backend: _Backend = _FileClaims(store) if store.is_sqlite else _AdvisoryClaims(store)

    @contextmanager
    def claim(self, decide: Callable[[], P | None], wait: bool = False) -> Iterator[P | None]:
        """Hold the window of ``decide()`` for the ``with`` block; ``None`` (nothing to do) holds nothing.

        ``decide`` is called inside the critical section, again after each wait, so a window
        computed from the database (the watermark) is always current. An overlapping live
        claim raises ``RunInProgress`` naming its run, or with ``wait`` is waited out.
        """
        while True:
            with self.backend.critical_section() as section:
                live = section.live_claims()
                self._mark_interrupted({c.run_id for c in live})
                plan = decide()
                if plan is None:
                    held = None
                    break
                pipeline = self.store.pipeline
                busy = next((c for c in live if c.overlaps(pipeline, plan.since, plan.until)), None)
                if busy is None:
                    held = section.record(
                        Claim(
                            plan.run_id, plan.since, plan.until, socket.gethostname(), os.getpid(), pipeline
                        )
                    )
                    break
            if not wait:
                raise RunInProgress(busy.run_id)
            log.info("window [%s, %s) overlaps run %s's: waiting", plan.since, plan.until, busy.run_id)
            time.sleep(self.poll_s)
        try:
            yield plan
        finally:
            if held is not None:
                self.backend.release(held)

    def hold(self, since: datetime, until: datetime, run_id: str, wait: bool = False) -> Any:
        """Claim a fixed window (a context manager)."""
        window = Window(since, until, run_id)
        return self.claim(lambda: window, wait=wait)

    def hold_everything(self, run_id: str, wait: bool = False) -> Any:
        """Claim all of time: for writers (a replay) whose rows may lie in any window."""
        return self.hold(*EVERYTHING, run_id, wait=wait)

    def live_claims(self) -> list[Claim]:
        with self.backend.critical_section() as section:
            return section.live_claims()

    def recover(self) -> list[str]:
        """Clear the claims of dead holders and mark the runs they left ``running`` interrupted; return those
        runs' ids. A live claim is never touched: its holder's lock says it is alive (see the module)."""
        with self.backend.critical_section() as section:
            return self._mark_interrupted({c.run_id for c in section.live_claims()})

    def _mark_interrupted(self, alive: set[str]) -> list[str]:
        """Runs left ``running`` by a process that holds no claim any more died before they finished."""
        records = self.store.records
        with self.store.reader.connect() as conn:  # a read first: on SQLite a write would wait for any load
            ids = [r for r in records.running(conn, except_kinds=ORCHESTRATED_KINDS) if r not in alive]
        if ids:
            with self.store.engine.begin() as conn:
                records.interrupt(conn, ids)
        for rid in ids:
            log.warning("run %s was left running by a dead process: marked failed (interrupted)", rid)
        return ids


class _Section(Protocol):
    def live_claims(self) -> list[Claim]: ...

    def record(self, claim: Claim) -> Any: ...


class _Backend(Protocol):
    def critical_section(self) -> Any: ...

    def release(self, held: Any) -> None: ...


# -- PostgreSQL: a row per claim, alive while its holder's session holds the row's advisory lock ----------------


@dataclass
class _PgHeld:
    conn: Connection
    claim_id: int


class _AdvisoryClaims:
    def __init__(self, store: Store):
        self.store = store
        self.table = store.t.run_locks

    @contextmanager
    def critical_section(self) -> Iterator[_PgSection]:
        with self.store.engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(MANAGER_KEY)))  # released at commit
            section = _PgSection(self, conn)
            try:
                yield section
            except BaseException:
                section.abandon()
                raise

    def release(self, held: _PgHeld) -> None:
        try:
            with self.store.engine.begin() as conn:
                conn.execute(delete(self.table).where(self.table.c.id == held.claim_id))
            held.conn.execute(select(func.pg_advisory_unlock(CLAIM_NS, held.claim_id)))
            held.conn.commit()
        except OperationalError:
            pass  # the server dropped the session, and the lock with it; the next claimant clears the row
        finally:
            held.conn.close()


class _PgSection:
    def __init__(self, backend: _AdvisoryClaims, conn: Connection):
        self.b, self.conn = backend, conn
        self.holder: Connection | None = None

    def live_claims(self) -> list[Claim]:
        t = self.b.table
        held_ids = text(
            "SELECT objid::int8 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
            "AND classid::int8 = :ns AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())"
        ).bindparams(ns=CLAIM_NS)
        alive = set(self.conn.execute(held_ids).scalars())
        rows = self.conn.execute(select(t)).mappings().all()
        dead = [r["id"] for r in rows if r["id"] not in alive]
        if dead:
            self.conn.execute(delete(t).where(t.c.id.in_(dead)))
            log.info("cleared %d window claim(s) of dead holders", len(dead))
        return [
            Claim(
                r["run_id"],
                as_utc(r["window_since"]),
                as_utc(r["window_until"]),
                r["host"],
                r["pid"],
                r["pipeline"],
            )
            for r in rows
            if r["id"] in alive
        ]

    def record(self, claim: Claim) -> _PgHeld:
        t = self.b.table
        claim_id = self.conn.execute(
            insert(t)
            .values(
                run_id=claim.run_id,
                window_since=claim.since,
                window_until=claim.until,
                host=claim.host,
                pid=claim.pid,
                acquired_at=utcnow(),
                pipeline=claim.pipeline,
            )
            .returning(t.c.id)
        ).scalar_one()
        # the holder's own session locks the row before the section commits, so no one ever sees it unlocked
        self.holder = self.b.store.engine.connect()
        for name, value in HOLDER_KEEPALIVE.items():  # the server's probes: its heartbeat
            self.holder.execute(text(f"SET {name} = {int(value)}"))
        self.holder.execute(select(func.pg_advisory_lock(CLAIM_NS, claim_id)))
        self.holder.commit()
        return _PgHeld(self.holder, claim_id)

    def abandon(self) -> None:
        if self.holder is not None:
            self.holder.close()


# -- SQLite: a file per claim in <db>.windows/, alive while its holder process keeps an flock on it -------------
# (fcntl.flock itself, not a lock package: a claim is a file of JSON that others read while it is held and probe
# with one non-blocking flock; a package's in-process reentrancy or soft-lock fallback would break the rule that a
# claim dies with its holder's process)


@dataclass
class _FileHeld:
    path: Path
    fd: int


class _FileClaims:
    def __init__(self, store: Store):
        base = store.sqlite_path or "eventpipe.sqlite"
        self.manager = Path(f"{base}.lock")
        self.dir = Path(f"{base}.windows")

    @contextmanager
    def critical_section(self) -> Iterator[_FileSection]:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.manager, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield _FileSection(self)
        finally:
            os.close(fd)  # closing drops the flock

    def release(self, held: _FileHeld) -> None:
        held.path.unlink(missing_ok=True)
        os.close(held.fd)


class _FileSection:
    def __init__(self, backend: _FileClaims):
        self.b = backend

    def live_claims(self) -> list[Claim]:
        out = []
        for path in sorted(self.b.dir.glob("*.json")):
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its holder is alive
                d = json.loads(path.read_text())
                out.append(
                    Claim(
                        d["run_id"],
                        datetime.fromisoformat(d["since"]),
                        datetime.fromisoformat(d["until"]),
                        d["host"],
                        d["pid"],
                        d.get("pipeline", "default"),  # a claim written before pipelines existed
                    )
                )
            else:
                path.unlink(missing_ok=True)  # the holder died: its lock went with it
                log.info("cleared the window claim of a dead holder (%s)", path.name)
            finally:
                os.close(fd)
        return out

    def record(self, claim: Claim) -> _FileHeld:
        path = self.b.dir / f"{uuid.uuid4().hex}.json"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(
            fd,
            json.dumps(
                {
                    "run_id": claim.run_id,
                    "since": claim.since.isoformat(),
                    "until": claim.until.isoformat(),
                    "host": claim.host,
                    "pid": claim.pid,
                    "pipeline": claim.pipeline,
                }
            ).encode(),
        )
        os.fsync(fd)
        return _FileHeld(path, fd)
