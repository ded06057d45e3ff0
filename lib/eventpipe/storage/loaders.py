"""Loaders: upsert clean rows, store dead letters, finish the run and move the watermark — one transaction.

All of it for the store's pipeline: its own destination table, its dead letters and its watermark.

Rows go into a temporary staging table first, then one set-based
``INSERT … SELECT … ON CONFLICT (user_id, timestamp, event_type) DO UPDATE``.
A row whose data did not change is left as it is (its lineage too), so a
rerun over unchanged data leaves an identical table.

A shared destination (``pipeline.shared``) has a ``source`` column first in its key, filled with the
pipeline's name: the conflict target, the changed-row count and the empty-range check all include it, so
one pipeline's load never updates, counts or collapses another's rows.

``Loader`` holds what both dialects share; ``PostgresLoader`` (``COPY``, a direct ``COPY`` into an
empty range, counting inserts with ``xmax``) and ``SQLiteLoader`` (batched inserts) hold what differs.
``loader_for`` picks one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Connection, DateTime, bindparam, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..core.counts import RunCounts
from ..core.records import record_hash
from ..errors import CountsMismatch
from ..testing.inject import checkpoint
from . import pgcopy
from .store import Store
from .tables import SOURCE_COLUMN, utcnow

if TYPE_CHECKING:
    from .early_load import EarlyLoad

log = logging.getLogger(__name__)

STAGED_COLUMNS = [
    "user_id",
    "timestamp",
    "event_type",
    "session_id",
    "properties",
    "event_date",
    "event_hour",
]
DATA_COLUMNS = ["session_id", "properties", "event_date", "event_hour"]
KEY_COLUMNS = ["user_id", "timestamp", "event_type"]
STAGING = "eventpipe_staging"
DL_STAGING = "eventpipe_dead_letter_staging"
COPY_READ = 1 << 20
JSONB_COLUMNS = frozenset({"properties", "reasons"})  # the jsonb columns a COPY fills (``tables``)


def _typed(sql: str) -> Any:
    """Textual SQL whose time parameters go through SQLAlchemy's DateTime (SQLite stores them as text)."""
    stmt = text(sql)
    names = [n for n in ("loaded_at", "now") if f":{n}" in sql]
    return stmt.bindparams(*(bindparam(n, type_=DateTime(timezone=True)) for n in names))


class Loader:
    """Writes one batch (clean parts + reject parts) and the run's outcome in one transaction."""

    insert = staticmethod(pg_insert)

    def __init__(self, store: Store):
        self.store = store
        self.t = store.t
        prep = store.engine.dialect.identifier_preparer
        self.q = prep.quote
        self.analytics = prep.format_table(self.t.analytics)
        self.dead_letter = prep.format_table(self.t.dead_letter)
        # a shared table: every row this loader writes or matches is the pipeline's own (its ``source``)
        self.source = {SOURCE_COLUMN: store.pipeline} if store.shared else {}
        self.key = [*self.source, *KEY_COLUMNS]

    def load(
        self,
        clean_parts: Iterable[str],
        reject_parts: Iterable[str],
        run_id: str,
        *,
        run_values: dict[str, Any] | None = None,
        watermark: tuple[str, datetime] | None = None,
        replayed_hashes: Iterable[str] = (),
        expected_rows: int | None = None,
        early: EarlyLoad | None = None,
    ) -> tuple[RunCounts, float]:
        """Returns the load's counts (only the load fields are set) and the seconds it took. ``early``
        (``early_load.take``): the transaction that already holds every clean row, copied during the
        transform; the rest of the load is written in it."""
        started = time.perf_counter()
        c = RunCounts()
        loaded_at = early.loaded_at if early is not None else utcnow()
        with early.transaction() if early is not None else self.store.engine.begin() as conn:
            if early is not None:
                staged, c.inserted, c.updated = early.rows, early.rows, 0
            else:
                self.begin(conn)
                clean_parts = list(clean_parts)
                direct = self.copy_into_empty_range(conn, clean_parts, run_id, loaded_at)
                if direct is not None:
                    staged, c.inserted, c.updated = direct, direct, 0
                else:
                    staged = self._stage_rows(conn, clean_parts)
                    c.inserted, c.updated = self.upsert(conn, run_id, loaded_at)
            if expected_rows is not None and staged != expected_rows:
                raise CountsMismatch(
                    f"load staged {staged} rows but quality passed {expected_rows}; nothing was written"
                )
            c.loaded = staged
            c.unchanged = staged - c.inserted - c.updated
            c.dead_letters_new, c.dead_letters_seen = self._dead_letters(
                conn, reject_parts, run_id, loaded_at
            )
            replayed = list(replayed_hashes)
            if replayed:
                self._mark_replayed(conn, replayed, run_id)
            if watermark:
                self._set_watermark(conn, watermark[0], watermark[1], run_id, loaded_at)
            seconds = time.perf_counter() - started
            checkpoint("load.before_commit", conn)
            self.store.records.finish(conn, run_id, {**(run_values or {}), **c.load_counts()})
        log.info(
            "loaded %d rows (%d inserted, %d updated, %d unchanged), %d new dead letters in %.2fs",
            c.loaded,
            c.inserted,
            c.updated,
            c.unchanged,
            c.dead_letters_new,
            seconds,
        )
        return c, seconds

    # -- what each dialect does its own way ------------------------------------------------------

    def begin(self, conn: Connection) -> None:
        """Session settings for the load's transaction."""

    def create_staging(self, conn: Connection, name: str, source: str, columns: list[str]) -> None:
        """A temporary table with ``columns`` typed like ``source``'s, without its constraints."""
        raise NotImplementedError

    def drop_staging(self, conn: Connection, name: str) -> None:
        """Temporary tables that outlive the transaction are dropped here."""

    def encode(self, table: pa.Table, lineage: dict[str, Any] | None = None) -> Any:
        """``table``, and ``lineage``'s values in every row, as ``copy_encoded`` sends them (PostgreSQL's are
        encoded a slice at a time as the ``COPY`` reads them)."""
        raise NotImplementedError

    def copy_encoded(self, conn: Connection, name: str, encoded: Any) -> None:
        """Bulk-insert rows that ``encode`` made into ``name``."""
        raise NotImplementedError

    def copy(self, conn: Connection, name: str, table: pa.Table) -> None:
        """Bulk-insert ``table`` into ``name``."""
        self.copy_encoded(conn, name, self.encode(table))

    def prepare(self, table: pa.Table) -> pa.Table:
        """Column types the bulk insert needs."""
        return table

    def copy_into_empty_range(
        self, conn: Connection, parts: list[str], run_id: str, loaded_at: datetime
    ) -> int | None:
        """A fast path that skips staging when nothing can conflict; None: not taken."""
        return None

    def distinct(self, a: str, b: str) -> str:
        return f"{a} IS DISTINCT FROM {b}"

    def staged_order(self) -> str:
        """The order in which the upsert takes the staged rows (an ``ORDER BY`` clause, or nothing)."""
        return ""

    def run_upsert(self, conn: Connection, upsert: str, params: dict[str, Any]) -> tuple[int, int]:
        """Execute the upsert; returns (inserted, updated)."""
        raise NotImplementedError

    # -- clean rows ----------------------------------------------------------------------------

    def lineage(self, run_id: str, loaded_at: datetime) -> dict[str, Any]:
        """The columns a direct ``COPY`` adds to each clean row: the pipeline's ``source`` (a shared table), the
        run and the load's time (``copy_into_empty_range`` and ``early_load`` stamp rows alike)."""
        return {**self.source, "run_id": run_id, "loaded_at": loaded_at}

    def _part_table(self, part: str) -> pa.Table | None:
        """A clean part's staged columns, typed as ``encode`` takes them (None: the part has no rows)."""
        table = pq.read_table(part, columns=STAGED_COLUMNS)
        return self.prepare(table) if table.num_rows else None

    def _ready_parts(
        self, parts: list[str], lineage: dict[str, Any] | None = None
    ) -> Iterator[tuple[int, Any]]:
        """Each clean part's row count and encoded rows, the next part read in a thread while the database
        takes this one (pyarrow and the driver's wait release the GIL): the client's work overlaps the
        server's instead of adding to it."""

        def ready(part: str) -> tuple[int, Any] | None:
            table = self._part_table(part)
            return None if table is None else (table.num_rows, self.encode(table, lineage))

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventpipe-load") as pool:
            ahead = pool.submit(ready, parts[0]) if parts else None
            for i in range(len(parts)):
                current = ahead.result() if ahead else None
                ahead = pool.submit(ready, parts[i + 1]) if i + 1 < len(parts) else None
                if current is not None:
                    yield current

    def _stage_rows(self, conn: Connection, parts: list[str]) -> int:
        self.create_staging(conn, STAGING, self.analytics, STAGED_COLUMNS)
        total = 0
        for rows, encoded in self._ready_parts(parts):
            self.copy_encoded(conn, STAGING, encoded)
            total += rows
        return total

    def _changed_predicate(self, old: str, new: str) -> str:
        return " OR ".join(self.distinct(f"{old}.{self.q(c)}", f"{new}.{self.q(c)}") for c in DATA_COLUMNS)

    def upsert(self, conn: Connection, run_id: str, loaded_at: datetime) -> tuple[int, int]:
        """One set-based upsert from staging; returns (inserted, updated). Unchanged rows are not touched."""
        q = self.q
        cols = ", ".join(q(c) for c in STAGED_COLUMNS)
        key = ", ".join(q(c) for c in self.key)
        sets = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in DATA_COLUMNS + ["run_id", "loaded_at"])
        lineage = [*self.source, "run_id", "loaded_at"]
        upsert = (
            f"INSERT INTO {self.analytics} ({cols}, {', '.join(q(c) for c in lineage)}) "
            f"SELECT {cols}, {', '.join(f':{c}' for c in lineage)} FROM {STAGING} WHERE true{self.staged_order()} "
            f"ON CONFLICT ({key}) DO UPDATE SET {sets} "
            f"WHERE {self._changed_predicate(self.analytics, 'excluded')}"
        )
        counts = self.run_upsert(conn, upsert, {**self.source, "run_id": run_id, "loaded_at": loaded_at})
        self.drop_staging(conn, STAGING)
        return counts

    # -- dead letters --------------------------------------------------------------------------

    def _dead_letters(
        self, conn: Connection, parts: Iterable[str], run_id: str, now: datetime
    ) -> tuple[int, int]:
        """Store each distinct rejected raw record once; seeing it again bumps ``attempts`` and ``last_seen``."""
        q, dl = self.q, self.dead_letter
        staged = ["record_hash", "raw", "stage", "reasons"]
        hashes: set[str] = set()  # one row per distinct raw record; only the hashes are held, not the records
        created = False
        for part in parts:
            table = pq.read_table(part, columns=["raw", "stage", "reasons"])
            out: dict[str, list[str]] = {c: [] for c in staged}
            for raw, stage, reasons in zip(
                table["raw"].to_pylist(), table["stage"].to_pylist(), table["reasons"].to_pylist()
            ):
                h = record_hash(raw)
                if h not in hashes:
                    hashes.add(h)
                    for c, v in zip(staged, (h, raw, stage, orjson.dumps(reasons).decode())):
                        out[c].append(v)
            if out["record_hash"]:
                if not created:  # only a run with rejects stages any
                    self.create_staging(conn, DL_STAGING, dl, staged)
                    created = True
                self.copy(conn, DL_STAGING, pa.table(out))
        if not hashes:
            return 0, 0
        seen = conn.execute(
            text(
                f"SELECT count(*) FROM {DL_STAGING} s JOIN {dl} d ON d.{q('record_hash')} = s.{q('record_hash')} "
                f"AND d.{q('pipeline')} = :pipeline"
            ),
            {"pipeline": self.store.pipeline},
        ).scalar()
        cols = ", ".join(q(c) for c in staged)
        conn.execute(
            _typed(
                f"INSERT INTO {dl} ({cols}, {q('pipeline')}, status, first_run_id, last_run_id, first_seen, "
                f"last_seen, attempts) "
                f"SELECT {cols}, :pipeline, 'pending', :run_id, :run_id, :now, :now, 1 FROM {DL_STAGING} WHERE true "
                f"ON CONFLICT ({q('pipeline')}, {q('record_hash')}) DO UPDATE SET last_seen = excluded.last_seen, "
                f"last_run_id = excluded.last_run_id, attempts = {dl}.attempts + 1, reasons = excluded.reasons, "
                f"stage = excluded.stage, status = 'pending' WHERE {dl}.status <> 'discarded'"
            ),
            {"run_id": run_id, "now": now, "pipeline": self.store.pipeline},
        )
        self.drop_staging(conn, DL_STAGING)
        return len(hashes) - int(seen), int(seen)

    def _mark_replayed(self, conn: Connection, hashes: list[str], run_id: str) -> None:
        dl = self.t.dead_letter
        for i in range(0, len(hashes), 1000):
            conn.execute(
                update(dl)
                .where(dl.c.pipeline == self.store.pipeline, dl.c.record_hash.in_(hashes[i : i + 1000]))
                .values(status="replayed", replayed_run_id=run_id, last_seen=utcnow())
            )

    # -- watermark ---------------------------------------------------------------------------------

    def _set_watermark(
        self, conn: Connection, name: str, until: datetime, run_id: str, now: datetime
    ) -> None:
        st = self.t.state
        stmt = self.insert(st).values(
            pipeline=self.store.pipeline, name=name, watermark=until, run_id=run_id, updated_at=now
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[st.c.pipeline, st.c.name],
                set_={"watermark": stmt.excluded.watermark, "run_id": run_id, "updated_at": now},
            )
        )


class PostgresLoader(Loader):
    """Binary ``COPY … FROM STDIN`` (``pgcopy``) into staging (or straight into an empty range); inserts counted
    by ``xmax``."""

    def begin(self, conn: Connection) -> None:
        # any time the load's SQL turns into text or a date is UTC's
        conn.exec_driver_sql("SET LOCAL TimeZone = 'UTC'")

    def prepare(self, table: pa.Table) -> pa.Table:
        """The part's rows in the key's order. The server then inserts each key beside the one before it in
        the primary key's B-tree instead of all over it: a ``COPY`` of rows sorted so a part at a time took ~15-25 %
        less of the server's time than of the same rows in the order they arrived (README, *Performance*). Only the order in which rows are sent changes, never which rows (the sort is stable),
        and Arrow's byte order is the order of the ``C`` and ``C.UTF-8`` collations (another
        collation's order differs only in places)."""
        return table.sort_by([(c, "ascending") for c in KEY_COLUMNS]) if table.num_rows > 1 else table

    def staged_order(self) -> str:
        # the key's order: each row is looked up (and inserted) beside the one before it in the primary key's
        # B-tree; upserting a run's rows into a table that held them all took ~10 % less time so, sort included
        # (README, *Performance*)
        return f" ORDER BY {', '.join(self.q(c) for c in KEY_COLUMNS)}"

    def create_staging(self, conn: Connection, name: str, source: str, columns: list[str]) -> None:
        cols = ", ".join(self.q(c) for c in columns)
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE {name} ON COMMIT DROP AS SELECT {cols} FROM {source} WITH NO DATA"
        )

    def encode(self, table: pa.Table, lineage: dict[str, Any] | None = None) -> tuple[list[str], pgcopy.Rows]:
        lineage = lineage or {}
        return [*table.column_names, *lineage], pgcopy.encode(table, JSONB_COLUMNS, lineage)

    def copy_encoded(self, conn: Connection, name: str, encoded: tuple[list[str], pgcopy.Rows]) -> None:
        columns, buf = encoded
        cols = ", ".join(self.q(c) for c in columns)
        cur = conn.connection.dbapi_connection.cursor()  # COPY is psycopg2's, not SQLAlchemy's
        try:
            # 1 MiB reads: psycopg2 takes the GIL for each, and the transform may hold it beside this thread
            cur.copy_expert(f"COPY {name} ({cols}) FROM STDIN WITH (FORMAT binary)", buf, size=COPY_READ)
        finally:
            cur.close()

    def copy_into_empty_range(
        self, conn: Connection, parts: list[str], run_id: str, loaded_at: datetime
    ) -> int | None:
        """When no stored row shares the batch's time range, nothing can conflict, so ``COPY`` straight into
        ``analytics`` (the batch is already deduplicated). A concurrent writer that slipped in rolls back to
        the savepoint and the upsert path runs instead."""
        if not parts:
            return None
        lo = hi = None
        for part in parts:
            col = pq.read_table(part, columns=["timestamp"])["timestamp"]
            if len(col):
                mm = pc.min_max(col).as_py()
                lo = mm["min"] if lo is None else min(lo, mm["min"])
                hi = mm["max"] if hi is None else max(hi, mm["max"])
        if lo is None or self.range_taken(conn, lo, hi):
            return None
        import psycopg2
        from sqlalchemy.exc import IntegrityError

        savepoint = conn.begin_nested()
        total = 0
        try:
            for rows, encoded in self._ready_parts(parts, self.lineage(run_id, loaded_at)):
                self.copy_encoded(conn, self.analytics, encoded)
                total += rows
            savepoint.commit()
        except (IntegrityError, psycopg2.IntegrityError):
            savepoint.rollback()
            log.info("a concurrent writer loaded rows in this range: using the upsert path")
            return None
        return total

    def range_taken(self, conn: Connection, lo: datetime, hi: datetime) -> bool:
        """Whether the destination holds a row of this pipeline with a time in ``[lo, hi]``."""
        q = self.q
        mine = "".join(f" AND {q(c)} = :{c}" for c in self.source)
        return (
            conn.execute(
                text(
                    f"SELECT 1 FROM {self.analytics} WHERE {q('event_date')} BETWEEN :d0 AND :d1 "
                    f"AND {q('timestamp')} BETWEEN :t0 AND :t1{mine} LIMIT 1"
                ),
                {"d0": lo.date(), "d1": hi.date(), "t0": lo, "t1": hi, **self.source},
            ).first()
            is not None
        )

    def run_upsert(self, conn: Connection, upsert: str, params: dict[str, Any]) -> tuple[int, int]:
        # xmax = 0 marks a freshly inserted row; counting in SQL ships no rows back
        row = conn.execute(
            _typed(
                f"WITH up AS ({upsert} RETURNING (xmax = 0) AS inserted) "
                "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) "
                "FROM up"
            ),
            params,
        ).one()
        return int(row[0]), int(row[1])


class SQLiteLoader(Loader):
    """Batched inserts into a temp table; inserts and updates counted against the table before the upsert."""

    insert = staticmethod(sqlite_insert)

    def create_staging(self, conn: Connection, name: str, source: str, columns: list[str]) -> None:
        cols = ", ".join(self.q(c) for c in columns)
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{name}")
        conn.exec_driver_sql(f"CREATE TEMP TABLE {name} AS SELECT {cols} FROM {source} WHERE 0")

    def drop_staging(self, conn: Connection, name: str) -> None:
        conn.exec_driver_sql(f"DROP TABLE {name}")

    def prepare(self, table: pa.Table) -> pa.Table:
        """Times as SQLite stores them: naive UTC text, and the date as text."""
        ts = pc.strftime(table["timestamp"], "%Y-%m-%d %H:%M:%S")  # UTC's: the column's zone
        table = table.set_column(table.column_names.index("timestamp"), "timestamp", ts)
        return table.set_column(
            table.column_names.index("event_date"), "event_date", pc.strftime(table["event_date"], "%Y-%m-%d")
        )

    def encode(
        self, table: pa.Table, lineage: dict[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        lineage = lineage or {}
        columns = [table[c].to_pylist() for c in table.column_names]
        columns += [[v] * table.num_rows for v in lineage.values()]
        return [*table.column_names, *lineage], list(zip(*columns))

    def copy_encoded(
        self, conn: Connection, name: str, encoded: tuple[list[str], list[tuple[Any, ...]]]
    ) -> None:
        columns, rows = encoded
        cols = ", ".join(self.q(c) for c in columns)
        marks = ", ".join("?" for _ in columns)
        conn.exec_driver_sql(f"INSERT INTO {name} ({cols}) VALUES ({marks})", rows)

    def distinct(self, a: str, b: str) -> str:
        return f"{a} IS NOT {b}"

    def run_upsert(self, conn: Connection, upsert: str, params: dict[str, Any]) -> tuple[int, int]:
        q = self.q
        on = " AND ".join(
            [*(f"a.{q(c)} = :{c}" for c in self.source), *(f"a.{q(c)} = s.{q(c)}" for c in KEY_COLUMNS)]
        )
        matched, changed = conn.execute(
            text(
                f"SELECT count(*), coalesce(sum(CASE WHEN {self._changed_predicate('a', 's')} THEN 1 ELSE 0 END), 0) "
                f"FROM {STAGING} s JOIN {self.analytics} a ON {on}"
            ),
            self.source,
        ).one()
        staged = conn.exec_driver_sql(f"SELECT count(*) FROM {STAGING}").scalar()
        conn.execute(_typed(upsert), params)
        return int(staged - matched), int(changed)


def loader_for(store: Store) -> Loader:
    """The loader for the store's dialect."""
    return SQLiteLoader(store) if store.is_sqlite else PostgresLoader(store)
