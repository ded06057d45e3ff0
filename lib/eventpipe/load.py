"""Load: upsert clean rows, store dead letters, finish the run and move the watermark — one transaction.

Rows go into a temporary staging table first (PostgreSQL: ``COPY``; SQLite:
a batched executemany), then one set-based
``INSERT … SELECT … ON CONFLICT (user_id, timestamp, event_type) DO UPDATE``.
A row whose data did not change is left as it is (its lineage too), so a
rerun over unchanged data leaves an identical table.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Iterable

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .errors import CountsMismatch
from .inject import checkpoint
from .store import Store, as_utc, utcnow

log = logging.getLogger(__name__)

COLUMNS = ["user_id", "timestamp", "event_type", "session_id", "properties", "event_date", "event_hour",
           "run_id", "loaded_at"]
DATA_COLUMNS = ["session_id", "properties", "event_date", "event_hour"]
STAGING = "eventpipe_staging"


@dataclass
class LoadResult:
    loaded: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    dead_letters_new: int = 0
    dead_letters_seen: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def record_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


class Loader:
    """Writes one batch (clean parts + reject parts) and the run's outcome in one transaction."""

    def __init__(self, store: Store):
        self.store = store
        self.t = store.t
        self.pg = not store.is_sqlite
        prep = store.engine.dialect.identifier_preparer
        self.q = prep.quote
        self.analytics = prep.format_table(self.t.analytics)

    def load(self, clean_parts: Iterable[str], reject_parts: Iterable[str], run_id: str, *,
             run_values: dict[str, Any] | None = None, watermark: tuple[str, datetime] | None = None,
             replayed_hashes: Iterable[str] = (), expected_rows: int | None = None) -> LoadResult:
        started = time.perf_counter()
        result = LoadResult()
        loaded_at = utcnow()
        with self.store.engine.begin() as conn:
            staged = self._stage(conn, clean_parts, run_id, loaded_at)
            matched, changed = self._compare(conn)
            self._upsert(conn)
            result.loaded = staged
            result.updated, result.unchanged = changed, matched - changed
            result.inserted = staged - matched
            if expected_rows is not None and staged != expected_rows:
                raise CountsMismatch(f"load staged {staged} rows but quality passed {expected_rows}; nothing was written")
            conn.exec_driver_sql(f"DROP TABLE {STAGING}")
            result.dead_letters_new, result.dead_letters_seen = self._dead_letters(conn, reject_parts, run_id, loaded_at)
            replayed = list(replayed_hashes)
            if replayed:
                self._mark_replayed(conn, replayed, run_id)
            if watermark:
                self._set_watermark(conn, watermark[0], watermark[1], run_id, loaded_at)
            result.seconds = time.perf_counter() - started
            checkpoint("load.before_commit", conn)
            self._finish_run(conn, run_id, {**(run_values or {}), **result.as_dict()})
        log.info("loaded %d rows (%d inserted, %d updated, %d unchanged), %d new dead letters in %.2fs",
                 result.loaded, result.inserted, result.updated, result.unchanged, result.dead_letters_new,
                 result.seconds)
        return result

    # -- clean rows ----------------------------------------------------------------------------

    def _stage(self, conn: Connection, parts: Iterable[str], run_id: str, loaded_at: datetime) -> int:
        if self.pg:
            conn.exec_driver_sql(f"CREATE TEMP TABLE {STAGING} (LIKE {self.analytics} INCLUDING DEFAULTS)")
        else:
            conn.exec_driver_sql(f"CREATE TEMP TABLE {STAGING} AS SELECT * FROM {self.analytics} WHERE 0")
        total = 0
        cols = ", ".join(self.q(c) for c in COLUMNS)
        for part in parts:
            table = pq.read_table(part)
            n = table.num_rows
            if not n:
                continue
            table = table.append_column("run_id", pa.array([run_id] * n, pa.string()))
            table = table.append_column("loaded_at", pa.array([loaded_at] * n, pa.timestamp("us", tz="UTC")))
            table = table.select(COLUMNS)
            if self.pg:
                buf = io.BytesIO()
                pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False))
                buf.seek(0)
                cur = conn.connection.dbapi_connection.cursor()
                cur.copy_expert(f"COPY {STAGING} ({cols}) FROM STDIN WITH (FORMAT csv)", buf)
                cur.close()
            else:
                table = table.set_column(1, "timestamp", pc.strftime(table["timestamp"], "%Y-%m-%d %H:%M:%S"))
                table = table.set_column(8, "loaded_at", pc.strftime(table["loaded_at"], "%Y-%m-%d %H:%M:%S"))
                table = table.set_column(5, "event_date", pc.strftime(table["event_date"], "%Y-%m-%d"))
                marks = ", ".join("?" for _ in COLUMNS)
                rows = list(zip(*(table[c].to_pylist() for c in COLUMNS)))
                conn.connection.dbapi_connection.cursor().executemany(
                    f"INSERT INTO {STAGING} ({cols}) VALUES ({marks})", rows)
            total += n
        return total

    def _distinct(self, a: str, b: str) -> str:
        return f"{a} IS DISTINCT FROM {b}" if self.pg else f"{a} IS NOT {b}"

    def _changed_predicate(self, old: str, new: str) -> str:
        return " OR ".join(self._distinct(f"{old}.{self.q(c)}", f"{new}.{self.q(c)}") for c in DATA_COLUMNS)

    def _compare(self, conn: Connection) -> tuple[int, int]:
        q = self.q
        on = " AND ".join(f"a.{q(c)} = s.{q(c)}" for c in ("user_id", "timestamp", "event_type"))
        row = conn.exec_driver_sql(
            f"SELECT count(*), coalesce(sum(CASE WHEN {self._changed_predicate('a', 's')} THEN 1 ELSE 0 END), 0) "
            f"FROM {STAGING} s JOIN {self.analytics} a ON {on}").one()
        return int(row[0]), int(row[1])

    def _upsert(self, conn: Connection) -> None:
        q = self.q
        cols = ", ".join(q(c) for c in COLUMNS)
        sets = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in DATA_COLUMNS + ["run_id", "loaded_at"])
        conn.exec_driver_sql(
            f"INSERT INTO {self.analytics} ({cols}) SELECT {cols} FROM {STAGING} WHERE true "
            f"ON CONFLICT ({q('user_id')}, {q('timestamp')}, {q('event_type')}) DO UPDATE SET {sets} "
            f"WHERE {self._changed_predicate(self.analytics, 'excluded')}")

    # -- dead letters --------------------------------------------------------------------------

    def _dead_letters(self, conn: Connection, parts: Iterable[str], run_id: str, now: datetime) -> tuple[int, int]:
        """Store each distinct rejected raw record once; seeing it again bumps ``attempts`` and ``last_seen``."""
        rows: dict[str, dict[str, Any]] = {}
        for part in parts:
            table = pq.read_table(part, columns=["raw", "stage", "reasons"])
            for raw, stage, reasons in zip(table["raw"].to_pylist(), table["stage"].to_pylist(),
                                           table["reasons"].to_pylist()):
                h = record_hash(raw)
                rows[h] = {"record_hash": h, "raw": raw, "stage": stage,
                           "reasons": orjson.dumps(reasons).decode()}
        if not rows:
            return 0, 0
        dl = self.t.dead_letter
        hashes = list(rows)
        existing: set[str] = set()
        for i in range(0, len(hashes), 1000):
            existing.update(conn.execute(select(dl.c.record_hash).where(dl.c.record_hash.in_(hashes[i:i + 1000]))).scalars())
        insert = pg_insert if self.pg else sqlite_insert
        stmt = insert(dl)
        stmt = stmt.on_conflict_do_update(
            index_elements=[dl.c.record_hash],
            set_={
                "last_seen": stmt.excluded.last_seen, "last_run_id": stmt.excluded.last_run_id,
                "attempts": dl.c.attempts + 1, "reasons": stmt.excluded.reasons, "stage": stmt.excluded.stage,
                "status": "pending",
            },
            where=dl.c.status != "discarded",
        )
        payload = [{**r, "status": "pending", "first_run_id": run_id, "last_run_id": run_id,
                    "first_seen": now, "last_seen": now, "attempts": 1} for r in rows.values()]
        for i in range(0, len(payload), 5000):
            conn.execute(stmt, payload[i:i + 5000])
        return len(rows) - len(existing), len(existing)

    def _mark_replayed(self, conn: Connection, hashes: list[str], run_id: str) -> None:
        dl = self.t.dead_letter
        for i in range(0, len(hashes), 1000):
            conn.execute(update(dl).where(dl.c.record_hash.in_(hashes[i:i + 1000]))
                         .values(status="replayed", replayed_run_id=run_id, last_seen=utcnow()))

    # -- run record and watermark --------------------------------------------------------------

    def _set_watermark(self, conn: Connection, name: str, until: datetime, run_id: str, now: datetime) -> None:
        st = self.t.state
        insert = pg_insert if self.pg else sqlite_insert
        stmt = insert(st).values(name=name, watermark=until, run_id=run_id, updated_at=now)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=[st.c.name],
            set_={"watermark": stmt.excluded.watermark, "run_id": run_id, "updated_at": now}))

    def _finish_run(self, conn: Connection, run_id: str, values: dict[str, Any]) -> None:
        runs = self.t.runs
        cols = {c.name for c in runs.columns}
        vals = {k: v for k, v in values.items() if k in cols and k != "run_id"}
        now = utcnow()
        started = conn.execute(select(runs.c.started_at).where(runs.c.run_id == run_id)).scalar()
        if started is None:
            # a notebook run by hand, outside the runner: record it all the same
            conn.execute(runs.insert().values(run_id=run_id, kind=vals.pop("kind", "manual"), status="running",
                                              started_at=now))
            started = now
        vals.update(status="succeeded", finished_at=now, error=None, failure_class=None, stage=None,
                    duration_s=(now - as_utc(started)).total_seconds())
        conn.execute(update(runs).where(runs.c.run_id == run_id).values(**vals))
