"""``RunMetrics``: what ``reports/<run_id>/metrics.json`` holds, and the one reader and writer of its format.

The runner builds it as a run ends; the audit trail adds the ledger; the index, the run pages, the
Prometheus and OpenLineage exports and the CLI read it back through ``from_json``. The file's keys and
their shapes are a contract (tests and external readers parse it): ``to_json`` writes them in the order
they have always had, ``pipeline`` only for a pipeline other than ``default``, ``error`` only for a failed
run, ``ledger`` once the audit trail recorded it, and ``lateness`` (``core.lateness``) for a run that
measured its late rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .counts import RunCounts
from .lateness import Lateness

KEYS = (
    "run_id",
    "kind",
    "status",
    "window",
    "counts",
    "pass_rate",
    "stage_seconds",
    "duration_s",
    "started_at",
    "finished_at",
    "stages",
    "report_dir",
    "database",
    "watermark",
    "pipeline",
    "error",
    "ledger",
    "lateness",
)


@dataclass(frozen=True)
class RunError:
    """Where and how a failed run stopped (``"class"`` in the file)."""

    stage: str | None
    failure_class: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "class": self.failure_class, "detail": self.detail}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RunError:
        return cls(d.get("stage"), d.get("class") or "", d.get("detail") or "")


@dataclass
class RunMetrics:
    """One run as it ended. Times are ISO 8601 text, as written; ``stages`` holds each stage's scrap as glued."""

    run_id: str
    kind: str
    status: str
    since: str | None = None
    until: str | None = None
    counts: RunCounts = field(default_factory=RunCounts)
    # the names of ``counts`` the stages reported: a run that stopped early has only some, and the file
    # lists only those (a count it never reached is absent, not 0)
    counted: tuple[str, ...] = ()
    pass_rate: float | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    duration_s: float | None = None
    started_at: str | None = None
    finished_at: str | None = None
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    report_dir: str | None = None
    database: str | None = None
    watermark: str | None = None
    pipeline: str = "default"  # written since named pipelines; an older file's run was pipeline default
    error: RunError | None = None
    ledger: dict[str, Any] | None = None
    lateness: Lateness | None = None
    # keys this version does not know (a file written by another one): kept, and written back as they were
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def with_counts(cls, reported: Mapping[str, Any], **fields: Any) -> RunMetrics:
        """Metrics whose counts are those ``reported`` names (other keys ignored)."""
        known = RunCounts.reported(reported)
        return cls(counts=RunCounts(**known), counted=tuple(known), **fields)

    def known_counts(self) -> dict[str, int]:
        """The reported counts, in field order: the file's ``counts``."""
        return {k: v for k, v in self.counts.as_dict().items() if k in self.counted}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "kind": self.kind,
            "status": self.status,
            "window": {"since": self.since, "until": self.until},
            "counts": self.known_counts(),
            "pass_rate": self.pass_rate,
            "stage_seconds": self.stage_seconds,
            "duration_s": self.duration_s,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "stages": self.stages,
            "report_dir": self.report_dir,
            "database": self.database,
            "watermark": self.watermark,
        }
        if self.pipeline != "default":  # a run of pipeline default writes the file it always wrote
            out["pipeline"] = self.pipeline
        if self.error is not None:
            out["error"] = self.error.to_json()
        if self.ledger is not None:
            out["ledger"] = self.ledger
        if self.lateness is not None:
            out["lateness"] = self.lateness.to_json()
        return {**out, **self.extra}

    @classmethod
    def read(cls, path: Path) -> RunMetrics:
        """A run's ``metrics.json``; ``OSError`` or ``ValueError`` when it cannot be read as one."""
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path} holds no JSON object")
        return cls.from_json(data)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RunMetrics:
        """A ``metrics.json`` as parsed; keys an older run did not write keep their defaults."""
        window = d.get("window") or {}
        return cls.with_counts(
            d.get("counts") or {},
            run_id=d.get("run_id") or "",
            kind=d.get("kind") or "",
            status=d.get("status") or "",
            since=window.get("since"),
            until=window.get("until"),
            pass_rate=d.get("pass_rate"),
            stage_seconds=dict(d.get("stage_seconds") or {}),
            duration_s=d.get("duration_s"),
            started_at=d.get("started_at"),
            finished_at=d.get("finished_at"),
            stages=dict(d.get("stages") or {}),
            report_dir=d.get("report_dir"),
            database=d.get("database"),
            watermark=d.get("watermark"),
            pipeline=d.get("pipeline") or "default",
            error=RunError.from_json(d["error"]) if d.get("error") else None,
            ledger=d.get("ledger"),
            lateness=Lateness.from_json(d["lateness"]) if isinstance(d.get("lateness"), dict) else None,
            extra={k: v for k, v in d.items() if k not in KEYS},
        )
