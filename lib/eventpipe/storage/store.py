"""Store: the engine, the run records' transactions, watermark and what ``status`` shows (SQLAlchemy 2 Core).

A store serves one pipeline (``settings.pipeline``): every read and write of run state is filtered by its
name, and its destination is the pipeline's own table. ``pipelines`` alone looks across all of them.

PostgreSQL is the production target and SQLite the embedded default; the pipeline creates its own
tables on both. Dialect differences live in the engine set-up here, in ``lock`` and in ``loaders``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError

from ..core.records import reason_code
from ..errors import DatabaseUnavailable, SettingsError
from ..settings import Settings, mask_url, redact
from .migrate import upgrade
from .runs import JSON_COLUMNS, RunRecords
from .tables import SOURCE_COLUMN, as_utc, define_tables

log = logging.getLogger(__name__)


def database_error(e: BaseException, settings: Settings | None = None) -> str:
    """The first line of a database error, any password in it masked: what a user is shown."""
    lines = str(getattr(e, "orig", e)).strip().splitlines()
    return redact(lines[0], settings) if lines else type(e).__name__


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # let SQLAlchemy own transactions (pysqlite's implicit ones break transactional DDL)
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin_write(conn: Any) -> None:
    # take the write lock up front: a deferred transaction that upgrades later can fail at once
    # with SQLITE_BUSY instead of waiting out busy_timeout
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_begin_read(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")  # readers (status, "in progress" checks) never wait for the writer


def pipeline_entry(
    name: str, last: dict[str, Any] | None = None, watermark: datetime | None = None, pending: int = 0
) -> dict[str, Any]:
    """One line of ``status``'s pipelines: times as ISO text, the health from the last run."""
    if last is not None:
        for k in ("started_at", "finished_at"):
            last[k] = as_utc(last[k]).isoformat() if last[k] else None
    status = last["status"] if last else None
    health = {None: "new", "running": "running", "failed": "failing"}.get(status, "ok")
    mark = as_utc(watermark)
    return {
        "pipeline": name,
        "last_run": last,
        "watermark": mark.isoformat() if mark else None,
        "dead_letters_pending": pending,
        "health": health,
    }


class Store:
    """An engine plus the pipeline's tables."""

    def __init__(self, settings: Settings):
        url = settings.database_url.reveal()
        self.settings = settings
        self.masked_url = mask_url(url)
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.sqlite_path = path
            self.engine: Engine = create_engine(url, connect_args={"timeout": 60})
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin_write)
            self.reader: Engine = create_engine(url, connect_args={"timeout": 60})
            event.listen(self.reader, "connect", _sqlite_pragmas)
            event.listen(self.reader, "begin", _sqlite_begin_read)
        else:
            self.sqlite_path = ""
            args: dict[str, Any] = {"connect_timeout": 10, "application_name": "eventpipe"}
            if settings.load.statement_timeout_s > 0:
                args["options"] = f"-c statement_timeout={int(settings.load.statement_timeout_s * 1000)}"
            self.engine = create_engine(url, pool_pre_ping=True, connect_args=args)
            self.reader = self.engine
        self.schema = settings.load.schema if not self.is_sqlite else ""
        self.pipeline = settings.pipeline.name
        self.shared = settings.pipeline.shared
        self.t = define_tables(self.schema or None, settings.pipeline.table_name, self.shared)
        self.records = RunRecords(self.t.runs, self.pipeline)

    def ping(self) -> None:
        """Fail fast (exit 2) when the database cannot be reached."""
        try:
            with self.reader.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as e:
            raise DatabaseUnavailable(
                f"cannot connect to the database {self.masked_url}: {database_error(e, self.settings)}; "
                "check DATABASE_URL and that the server is running"
            ) from None

    def create_schema(self) -> None:
        """Create or upgrade the pipeline's tables to the newest migration (a read when already there), and
        the pipeline's own destination table; a destination that is shared, or not, against the pipeline's
        ``pipeline.shared`` stops the run here, before anything is fetched."""
        upgrade(self.engine, self.reader, self.schema or None)
        table = self.t.analytics
        # a pipeline's own table, analytics's twin: made as the pipeline first runs, a read after that
        with self.reader.connect() as conn:
            found = inspect(conn)
            exists = found.has_table(table.name, schema=self.schema or None)
            columns = (
                {c["name"] for c in found.get_columns(table.name, self.schema or None)} if exists else set()
            )
        if exists:
            self._check_destination(SOURCE_COLUMN in columns)
        elif table.name != "analytics":
            table.create(self.engine, checkfirst=True)

    def _check_destination(self, has_source: bool) -> None:
        """A shared table's rows are told apart by ``source``; one without it holds a single pipeline's rows.
        Loading one as the other would mix two sources' rows under one key: refuse, in one line."""
        name = self.t.analytics.name
        if self.shared and not has_source:
            raise SettingsError(
                f"pipeline {self.pipeline}: pipeline.shared is true but table {name} already exists without "
                f"a {SOURCE_COLUMN} column (another pipeline's own table): name a new table in pipeline.table"
            )
        if has_source and not self.shared:
            raise SettingsError(
                f"pipeline {self.pipeline}: table {name} is a shared table (it has a {SOURCE_COLUMN} column): "
                "set pipeline.shared: true in this pipeline's params, or name a table of its own"
            )

    def dispose(self) -> None:
        self.engine.dispose()
        self.reader.dispose()

    # -- run records (``RunRecords`` writes them; these callers want a transaction of their own) ---------

    def fail_run(
        self,
        run_id: str,
        stage: str | None,
        failure_class: str,
        error: str,
        finished_at: datetime | None = None,
        values: dict[str, Any] | None = None,
    ) -> bool:
        """``failed`` unless its load committed (then it stays ``succeeded``: returns False)."""
        with self.engine.begin() as conn:
            return self.records.fail(
                conn, run_id, stage, failure_class, redact(error, self.settings), finished_at, values
            )

    def run_status(self, run_id: str) -> str | None:
        with self.reader.connect() as conn:
            return self.records.status_of(conn, run_id)

    def flag_audit(self, run_id: str, error: str) -> None:
        with self.engine.begin() as conn:
            self.records.flag_audit(conn, run_id, redact(error, self.settings))

    def clear_audit(self, run_id: str) -> None:
        with self.engine.begin() as conn:
            self.records.clear_audit(conn, run_id)

    def unfinished_audits(self) -> list[str]:
        with self.reader.connect() as conn:
            return self.records.unfinished_audits(conn)

    def record_ledger(self, run_id: str, entry: dict[str, Any]) -> None:
        """Store a run's ledger entry (``audit.ledger.ledger_entry``) in its ``pipeline_runs`` row."""
        with self.engine.begin() as conn:
            self.records.ledger(conn, run_id, entry)

    def record_seal(self, run_id: str, entry: dict[str, Any]) -> None:
        """Store a run's sealed ledger entry (``audit.chain.seal``) in its ``pipeline_runs`` row."""
        with self.engine.begin() as conn:
            self.records.seal(conn, run_id, entry)

    def ledger_rows(self) -> dict[str, dict[str, Any]]:
        """Every run's ``report_dir``, ``reports_sha256`` and sealed ``ledger_entry`` by run id (``report verify``)."""
        r = self.t.runs
        cols = (r.c.report_dir, r.c.reports_sha256, r.c.ledger_entry)
        with self.reader.connect() as conn:
            rows = conn.execute(select(r.c.run_id, *cols)).mappings().all()
        out = {}
        for row in rows:
            d = {c.name: row[c.name] for c in cols}
            for k in ("reports_sha256", "ledger_entry"):
                if isinstance(d[k], str):
                    d[k] = json.loads(d[k])
            out[row["run_id"]] = d
        return out

    def run_entry(self, run_id: str) -> dict[str, Any] | None:
        """One run's row, ledger columns decoded, times as ISO text; None when there is no such run."""
        with self.reader.connect() as conn:
            row = conn.execute(select(self.t.runs).where(self.t.runs.c.run_id == run_id)).mappings().first()
        if row is None:
            return None
        out = dict(row)
        for k in JSON_COLUMNS:
            if isinstance(out.get(k), str):
                out[k] = json.loads(out[k])
        for k in ("window_since", "window_until", "started_at", "finished_at"):
            out[k] = as_utc(out[k]).isoformat() if out[k] else None
        return out

    def recent_runs(self, limit: int = 10) -> list[dict[str, Any]]:
        r = self.t.runs
        q = select(r).where(r.c.pipeline == self.pipeline).order_by(r.c.started_at.desc()).limit(limit)
        with self.reader.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def last_success(self, kind: str) -> datetime | None:
        """When the newest successful run of ``kind`` finished (``metrics.prom``'s last-success gauge)."""
        r = self.t.runs
        q = select(func.max(r.c.finished_at)).where(
            r.c.pipeline == self.pipeline, r.c.kind == kind, r.c.status == "succeeded"
        )
        with self.reader.connect() as conn:
            return as_utc(conn.execute(q).scalar())

    # -- watermark ---------------------------------------------------------------------------

    def watermark(self, name: str = "incremental") -> datetime | None:
        st = self.t.state
        with self.reader.connect() as conn:
            return as_utc(
                conn.execute(
                    select(st.c.watermark).where(st.c.pipeline == self.pipeline, st.c.name == name)
                ).scalar()
            )

    # -- reading for status, backfill and replay -------------------------------------------------

    def succeeded_windows(self, kind: str) -> set[tuple[datetime, datetime]]:
        r = self.t.runs
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(r.c.window_since, r.c.window_until).where(
                    r.c.pipeline == self.pipeline, r.c.kind == kind, r.c.status == "succeeded"
                )
            ).all()
        return {(as_utc(a), as_utc(b)) for a, b in rows}

    def pending_dead_letters(self) -> list[dict[str, Any]]:
        dl = self.t.dead_letter
        with self.reader.connect() as conn:
            rows = (
                conn.execute(
                    select(dl.c.id, dl.c.raw, dl.c.first_seen)
                    .where(dl.c.pipeline == self.pipeline, dl.c.status == "pending")
                    .order_by(dl.c.id)
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    def status(self, limit: int = 10) -> dict[str, Any]:
        """What ``status`` shows: last runs, the watermark, dead letters by status, stage and reason."""
        dl = self.t.dead_letter
        mine = dl.c.pipeline == self.pipeline
        with self.reader.connect() as conn:
            by_status = dict(
                conn.execute(select(dl.c.status, func.count()).where(mine).group_by(dl.c.status)).all()
            )
            pending = conn.execute(
                select(dl.c.stage, dl.c.reasons).where(mine, dl.c.status == "pending")
            ).all()
        by_stage: dict[str, Counter] = defaultdict(Counter)
        for stage, reasons in pending:
            items = reasons if isinstance(reasons, list) else json.loads(reasons)
            for reason in items:
                by_stage[stage][reason_code(str(reason))] += 1
        runs = []
        for r in self.recent_runs(limit):
            for k in ("window_since", "window_until", "started_at", "finished_at"):
                r[k] = as_utc(r[k]).isoformat() if r[k] else None
            runs.append(r)
        mark = self.watermark()
        return {
            "database": self.masked_url,
            "watermark": mark.isoformat() if mark else None,
            "runs": runs,
            "dead_letters": {
                "pending": by_status.get("pending", 0),
                "replayed": by_status.get("replayed", 0),
                "discarded": by_status.get("discarded", 0),
                "pending_by_stage_reason": {s: dict(c.most_common()) for s, c in sorted(by_stage.items())},
            },
        }

    def pipelines(self) -> list[dict[str, Any]]:
        """Every pipeline the database holds state of, by name: its last run, watermark, pending dead letters
        and health (``new``: no run yet, ``running``, ``failing``: its last run failed, else ``ok``)."""
        r, st, dl = self.t.runs, self.t.state, self.t.dead_letter
        with self.reader.connect() as conn:
            marks = dict(
                conn.execute(select(st.c.pipeline, st.c.watermark).where(st.c.name == "incremental")).all()
            )
            pending = dict(
                conn.execute(
                    select(dl.c.pipeline, func.count())
                    .where(dl.c.status == "pending")
                    .group_by(dl.c.pipeline)
                ).all()
            )
            names = {*conn.execute(select(r.c.pipeline).distinct()).scalars(), *marks, *pending}
            out = []
            for name in sorted(names):
                last = (
                    conn.execute(
                        select(r.c.run_id, r.c.kind, r.c.status, r.c.started_at, r.c.finished_at)
                        .where(r.c.pipeline == name)
                        .order_by(r.c.started_at.desc())
                        .limit(1)
                    )
                    .mappings()
                    .first()
                )
                out.append(
                    pipeline_entry(name, dict(last) if last else None, marks.get(name), pending.get(name, 0))
                )
        return out

    def window_summary(self, since: datetime, until: datetime) -> dict[str, Any]:
        """What a reviewer checks after a load: the window's rows, the table's size, dead letters, the watermark.

        The table's size is the sum of the rows inserted by successful runs (``pipeline_runs``), so a load
        never counts a table of millions of rows; only the window's rows are counted, through the date index.
        """
        a, dl, st, r = self.t.analytics, self.t.dead_letter, self.t.state, self.t.runs
        mine = [a.c[SOURCE_COLUMN] == self.pipeline] if self.shared else []
        with self.reader.connect() as conn:
            in_window = conn.execute(
                select(func.count())
                .select_from(a)
                .where(
                    *mine,
                    a.c.event_date >= since.date(),
                    a.c.event_date <= until.date(),
                    a.c.timestamp >= since,
                    a.c.timestamp < until,
                )
            ).scalar()
            total = conn.execute(
                select(func.coalesce(func.sum(r.c.inserted), 0)).where(
                    r.c.pipeline == self.pipeline, r.c.status == "succeeded"
                )
            ).scalar()
            by_status = dict(
                conn.execute(
                    select(dl.c.status, func.count())
                    .where(dl.c.pipeline == self.pipeline)
                    .group_by(dl.c.status)
                ).all()
            )
            mark = conn.execute(
                select(st.c.watermark, st.c.run_id).where(
                    st.c.pipeline == self.pipeline, st.c.name == "incremental"
                )
            ).first()
        return {
            "in_window": in_window,
            "total": total,
            "dead_letters": by_status,
            "watermark": as_utc(mark[0]) if mark else None,
            "watermark_run_id": mark[1] if mark else None,
        }
