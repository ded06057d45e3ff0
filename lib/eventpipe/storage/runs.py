"""The run record: every write to a run's ``pipeline_runs`` row happens here.

A run's row is started by the runner (or resumed by an orchestrator's later task), finished by its
load, failed by the runner, marked interrupted by the window locks when its process died, and given
its ledger entry by the audit trail. Each method takes the caller's ``Connection`` and runs inside its
transaction: the load finishes the row in the transaction that upserts the rows and moves the watermark.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, select, update

from ..errors import PipelineError
from .tables import as_utc, utcnow

ERROR_LIMIT = 4000  # characters of an error kept in the row (the report keeps all of it)
INTERRUPTED = "interrupted: the process running it died before it finished"
# the failure classes of a run that ended without finishing its stages, apart from a stage's own failure
TERMINATED = "terminated"  # stopped by SIGTERM or SIGINT: recorded by the runner before it exited
INTERRUPTED_CLASS = "interrupted"  # its process died (SIGKILL, out of memory, a lost machine): recorded later
# a run that loaded (``succeeded``) whose audit files could not all be written: the flag sits in failure_class
AUDIT_INCOMPLETE = "audit incomplete"
LEDGER_JSON = ("notebooks_sha256", "reports_sha256", "params")
JSON_COLUMNS = (*LEDGER_JSON, "ledger_entry")  # text on SQLite: decoded as they are read


class RunRecords:
    """The writes to ``pipeline_runs`` (reads are the ``Store``'s)."""

    def __init__(self, runs: Table, pipeline: str = "default"):
        self.t = runs
        self.pipeline = pipeline  # the pipeline of the rows this writer starts

    def start(
        self,
        conn: Connection,
        run_id: str,
        kind: str,
        since: datetime | None,
        until: datetime | None,
        report_dir: str,
        parent_run_id: str | None = None,
    ) -> None:
        """A new row, ``running`` (a row left by an earlier run with this id is replaced)."""
        conn.execute(self.t.delete().where(self.t.c.run_id == run_id))
        self._insert(
            conn,
            run_id,
            kind,
            utcnow(),
            window_since=since,
            window_until=until,
            report_dir=report_dir,
            parent_run_id=parent_run_id,
            **_this_process(),
        )

    def resume(
        self, conn: Connection, run_id: str, kind: str, since: datetime, until: datetime, report_dir: str
    ) -> float:
        """A run's next stage starts (in another process, maybe on another host): ``running`` again, the
        failure of an earlier try cleared. Returns the seconds since the run started."""
        started = self._started_at(conn, run_id)
        if started is None:  # its first stage ran somewhere that did not record it: record it now
            started = utcnow()
            self._insert(
                conn, run_id, kind, started, window_since=since, window_until=until, report_dir=report_dir
            )
        self._set(
            conn,
            run_id,
            status="running",
            stage=None,
            failure_class=None,
            error=None,
            finished_at=None,
            duration_s=None,
            **_this_process(),
        )
        return (utcnow() - started).total_seconds()

    def finish(self, conn: Connection, run_id: str, values: dict[str, Any]) -> None:
        """``succeeded``, with ``values`` (the counts, the pass rate; keys that are no column are ignored).
        A notebook run by hand, outside the runner, has no row yet: it gets one.

        A row that no longer says ``running`` (its run was marked interrupted or terminated meanwhile, while an
        orphaned kernel carried on) is not finished: ``RunNotRunning`` rolls the caller's transaction back, so
        a run recorded as not loaded never loads. A hand run's row (kind ``manual``) may be finished again.
        """
        cols = {c.name for c in self.t.columns}
        vals = {k: v for k, v in values.items() if k in cols and k != "run_id"}
        now = utcnow()
        row = conn.execute(
            select(self.t.c.started_at, self.t.c.status, self.t.c.kind, self.t.c.failure_class).where(
                self.t.c.run_id == run_id
            )
        ).first()
        if row is None:
            self._insert(conn, run_id, vals.pop("kind", "manual"), now)
            started = now
        else:
            if row.status != "running" and row.kind != "manual":
                raise RunNotRunning(run_id, row.status, row.failure_class)
            started = as_utc(row.started_at)
        vals.update(
            status="succeeded",
            finished_at=now,
            error=None,
            failure_class=None,
            stage=None,
            duration_s=(now - started).total_seconds(),
        )
        self._set(conn, run_id, **vals)

    def fail(
        self,
        conn: Connection,
        run_id: str,
        stage: str | None,
        failure_class: str,
        error: str,
        finished_at: datetime | None = None,
        values: dict[str, Any] | None = None,
    ) -> bool:
        """``failed`` in ``stage`` (None: outside any stage); ``error`` must already be free of secrets.
        ``finished_at``: when it ended, if not now (a dead run's last sign of life). ``values``: what the
        stages that ran reported (counts, pass rate), as ``metrics.json`` has them.

        A run whose load committed stays ``succeeded``: what happens after the commit cannot make it a
        failure. Returns whether the row was failed."""
        started = self._started_at(conn, run_id)
        now = finished_at or utcnow()
        cols = {c.name for c in self.t.columns}
        reported = {k: v for k, v in (values or {}).items() if k in cols and k != "run_id"}
        result = conn.execute(
            update(self.t)
            .where(self.t.c.run_id == run_id, self.t.c.status != "succeeded")
            .values(
                **reported,
                status="failed",
                stage=stage,
                failure_class=failure_class,
                error=error[:ERROR_LIMIT],
                finished_at=now,
                duration_s=max(0.0, (now - started).total_seconds()) if started else None,
            )
        )
        return bool(result.rowcount)

    def status_of(self, conn: Connection, run_id: str) -> str | None:
        return conn.execute(select(self.t.c.status).where(self.t.c.run_id == run_id)).scalar()

    def flag_audit(self, conn: Connection, run_id: str, error: str) -> None:
        """A run that loaded but whose audit files could not all be written: still ``succeeded`` (its rows,
        dead letters and watermark are committed), with class ``audit incomplete`` and what was not written."""
        conn.execute(
            update(self.t)
            .where(self.t.c.run_id == run_id, self.t.c.status == "succeeded")
            .values(failure_class=AUDIT_INCOMPLETE, error=error[:ERROR_LIMIT])
        )

    def clear_audit(self, conn: Connection, run_id: str) -> None:
        """Its audit files were written after all (``report RUN_ID``)."""
        conn.execute(
            update(self.t)
            .where(self.t.c.run_id == run_id, self.t.c.failure_class == AUDIT_INCOMPLETE)
            .values(failure_class=None, error=None)
        )

    def unfinished_audits(self, conn: Connection) -> list[str]:
        """Runs that ended without their audit trail sealed and are waiting for it: those marked interrupted,
        and those flagged ``audit incomplete`` (any pipeline's)."""
        q = select(self.t.c.run_id).where(
            self.t.c.failure_class.in_((INTERRUPTED_CLASS, AUDIT_INCOMPLETE)),
            self.t.c.status != "running",
            self.t.c.ledger_seq.is_(None),
        )
        return list(conn.execute(q).scalars())

    def running(self, conn: Connection, except_kinds: Collection[str] = ()) -> list[str]:
        """The ids of the runs whose row says ``running``, but for runs of ``except_kinds``."""
        q = select(self.t.c.run_id).where(self.t.c.status == "running", self.t.c.kind.not_in(except_kinds))
        return list(conn.execute(q).scalars())

    def interrupt(self, conn: Connection, run_ids: Collection[str]) -> None:
        """Runs whose process died before they finished: ``failed`` (``interrupted``), if still ``running``."""
        conn.execute(
            update(self.t)
            .where(self.t.c.run_id.in_(run_ids), self.t.c.status == "running")
            .values(status="failed", failure_class=INTERRUPTED_CLASS, finished_at=utcnow(), error=INTERRUPTED)
        )

    def ledger(self, conn: Connection, run_id: str, entry: dict[str, Any]) -> None:
        """A run's ledger entry (``audit.ledger.ledger_entry``)."""
        code = entry.get("code") or {}
        values = dict(
            code_version=code.get("git_commit") or code.get("package_version"),
            code_dirty=code.get("dirty"),
            notebooks_sha256=entry.get("notebooks_sha256"),
            reports_sha256=entry.get("reports_sha256"),
            params=entry.get("params"),
            params_sha256=entry.get("params_sha256"),
            run_user=entry.get("user"),
            host=entry.get("host"),
        )
        if conn.dialect.name == "sqlite":  # JSON columns are text there
            for k in LEDGER_JSON:
                values[k] = json.dumps(values[k], sort_keys=True, default=str)
        self._set(conn, run_id, **values)

    def seal(self, conn: Connection, run_id: str, entry: dict[str, Any]) -> None:
        """A run's sealed ledger entry, its place in the chain and its hash (``audit.chain.seal``)."""
        sealed: Any = entry
        if conn.dialect.name == "sqlite":
            sealed = json.dumps(entry, sort_keys=True, default=str)
        self._set(
            conn, run_id, ledger_seq=entry["seq"], ledger_sha256=entry["entry_sha256"], ledger_entry=sealed
        )

    def _insert(self, conn: Connection, run_id: str, kind: str, started: datetime, **values: Any) -> None:
        conn.execute(
            self.t.insert().values(
                run_id=run_id,
                kind=kind,
                status="running",
                started_at=started,
                pipeline=self.pipeline,
                **values,
            )
        )

    def _started_at(self, conn: Connection, run_id: str) -> datetime | None:
        return as_utc(conn.execute(select(self.t.c.started_at).where(self.t.c.run_id == run_id)).scalar())

    def _set(self, conn: Connection, run_id: str, **values: Any) -> None:
        conn.execute(update(self.t).where(self.t.c.run_id == run_id).values(**values))


def _this_process() -> dict[str, Any]:
    """Where a run executes now (``status`` shows it; a later task may run elsewhere)."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


class RunNotRunning(PipelineError):
    """A load tried to finish a run that is no longer ``running``: nothing of it is committed."""

    def __init__(self, run_id: str, status: str, failure_class: str | None):
        how = f"{status} ({failure_class})" if failure_class else status
        super().__init__(
            f"run {run_id} is recorded as {how}, no longer running: its load was rolled back, nothing was "
            "written; the next run re-reads its window"
        )
