"""``reports/index.html`` (every run, filterable) and ``reports/<run_id>/run.html`` (one run's page).

Both are single files with inline CSS and JavaScript: they work opened straight from
the file system, offline. This module gathers what they show; their markup is in
``templates/index.html.j2`` and ``templates/run.html.j2``. Every value from a run (ids,
errors, parameters, reasons) is autoescaped, and a Content-Security-Policy lets only the
page's own script run, so markup in event data shows as text and never executes.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..core.counts import IDENTITIES, SUMMARY_NAMES, RunCounts, label
from ..core.run_metrics import RunMetrics
from . import charts
from .ledger import code_label
from .templating import render

log = logging.getLogger(__name__)

RUN_PAGE = "run.html"
INDEX = "index.html"
STAGE_NOTEBOOKS = (
    ("extract", "01_extract"),
    ("transform_quality", "02_transform_quality"),
    ("load", "03_load"),
)
# the index's count columns: what came in, each way a record left before the load, what was loaded
COUNT_COLUMNS = SUMMARY_NAMES


@dataclass
class RunSummary:
    """What the index shows of one run, read from its ``metrics.json`` (or only its folder)."""

    run_id: str
    folder: Path
    run_metrics: RunMetrics | None = None

    @property
    def metrics(self) -> dict[str, Any]:
        """``metrics.json`` as written (empty without one): what the pages render."""
        return self.run_metrics.to_json() if self.run_metrics else {}

    @property
    def status(self) -> str:
        return (self.run_metrics and self.run_metrics.status) or "unknown"

    @property
    def kind(self) -> str:
        return (self.run_metrics and self.run_metrics.kind) or _kind_from_id(self.run_id)

    @property
    def started(self) -> datetime | None:
        text = self.run_metrics and self.run_metrics.started_at
        if text:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        try:
            return datetime.strptime(self.run_id[:15], "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
        except ValueError:
            return None

    @property
    def error(self) -> dict[str, Any]:
        error = self.run_metrics and self.run_metrics.error
        return error.to_json() if error else {}

    @property
    def counts(self) -> dict[str, int]:
        return self.run_metrics.known_counts() if self.run_metrics else {}

    def stage_metrics(self, stage: str) -> dict[str, Any]:
        return (self.run_metrics.stages.get(stage) if self.run_metrics else None) or {}


def _kind_from_id(run_id: str) -> str:
    parts = run_id.split("-")
    return parts[1] if len(parts) >= 3 else "unknown"


def read_runs(reports_dir: Path) -> list[RunSummary]:
    """Every run folder under ``reports_dir``, newest first."""
    runs = []
    if not reports_dir.is_dir():
        return runs
    for folder in reports_dir.iterdir():
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        metrics = None
        path = folder / "metrics.json"
        if path.is_file():
            try:
                metrics = RunMetrics.read(path)
            except (OSError, ValueError):
                log.warning("%s is not readable JSON: listed without its metrics", path)
        elif not any(folder.glob("*.ipynb")):
            continue
        runs.append(RunSummary(folder.name, folder, metrics))
    runs.sort(key=lambda r: (r.started or datetime.min.replace(tzinfo=timezone.utc), r.run_id), reverse=True)
    return runs


# -- formatting -----------------------------------------------------------------------------------


def _short_window(w: dict[str, Any] | None) -> str:
    if not w or not w.get("since"):
        return "-"
    a = datetime.fromisoformat(w["since"].replace("Z", "+00:00"))
    b = datetime.fromisoformat(w["until"].replace("Z", "+00:00"))
    fmt = "%Y-%m-%d %H:%M" if a.year != b.year else "%m-%d %H:%M"
    return f"{a:{fmt}} → {b:{fmt}}"


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _secs(v: Any) -> str | None:
    return None if v is None else f"{v:.1f}"


@dataclass(frozen=True)
class _Report:
    """A file of the run that its pages link to (a stage notebook, with its HTML when there is one)."""

    name: str
    notebook: bool = False
    html: bool = False


def _reports(run: RunSummary) -> list[_Report]:
    out = [
        _Report(stem, notebook=True, html=(run.folder / f"{stem}.html").is_file())
        for _stage, stem in STAGE_NOTEBOOKS
        if (run.folder / f"{stem}.ipynb").is_file()
    ]
    return out + [
        _Report(name) for name in ("metrics.json", "run.log", "metrics.prom") if (run.folder / name).is_file()
    ]


def _page(template: str, **context: Any) -> str:
    """A page from ``templates/``; the nonce, new for each page, is what lets its own script run."""
    return render(template, nonce=secrets.token_urlsafe(16), **context)


# -- the index ------------------------------------------------------------------------------------


def _index_row(r: RunSummary) -> dict[str, Any]:
    err = r.error
    started = r.started
    return {
        "run_id": r.run_id,
        "status": r.status,
        "kind": r.kind,
        "date": f"{started:%Y-%m-%d}" if started else "",
        "page": f"{r.run_id}/{RUN_PAGE}" if (r.folder / RUN_PAGE).is_file() else None,
        "window": _short_window(r.metrics.get("window")),
        "error": err
        and {
            "class": err.get("class") or "",
            "stage": err.get("stage") or "-",
            "detail": _clip(_first_line(err.get("detail"))),
        },
        "counts": r.counts,
        "pass_rate": r.metrics.get("pass_rate"),
        "seconds": _secs(r.metrics.get("duration_s")),
        "code": code_label((r.metrics.get("ledger") or {}).get("code")),
        "reports": _reports(r),
    }


def index_html(runs: list[RunSummary]) -> str:
    return _page(
        "index.html.j2",
        rows=[_index_row(r) for r in runs],
        statuses=sorted({r.status for r in runs}),
        kinds=sorted({r.kind for r in runs}),
        built=f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M}",
        COUNT_COLUMNS=COUNT_COLUMNS,
        label=label,
    )


# -- one run's page -------------------------------------------------------------------------------


def count_identity(c: dict[str, Any]) -> list[tuple[str, bool]]:
    """Each sum of ``RunCounts``' identities that this run's reported counts can check, written out with its
    numbers (``loaded 7 = passed 7 = inserted 5 + updated 2 + unchanged 0``), and whether it holds."""
    known = RunCounts.reported(c)
    out = []
    for identity in IDENTITIES:
        sums = identity.checkable(known)
        if sums:
            sides = [" + ".join(f"{label(p)} {known[p]:,}" for p in parts if p in known) for parts in sums]
            text = " = ".join([f"{label(identity.total)} {known[identity.total]:,}", *sides])
            out.append((text, all(identity.adds_up(known, parts) for parts in sums)))
    return out


def _ledger(ledger: dict[str, Any]) -> dict[str, Any] | None:
    if not ledger:
        return None
    return {
        "code": json.dumps(ledger.get("code") or {}),
        "user": str(ledger.get("user")),
        "host": str(ledger.get("host")),
        "params_sha256": str(ledger.get("params_sha256")),
        "notebooks": ledger.get("notebooks_sha256") or {},
        "reports": ledger.get("reports_sha256") or {},
        "params": {k: json.dumps(v, default=str) for k, v in (ledger.get("params") or {}).items()},
    }


def run_html(run: RunSummary) -> str:
    m = run.metrics
    err = run.error
    w = m.get("window") or {}
    tq = run.stage_metrics("transform_quality")
    labels, values, unit = charts.events_over_time(tq.get("per_hour") or {})
    return _page(
        "run.html.j2",
        INDEX=INDEX,
        run_id=run.run_id,
        failure=run.status == "failed"
        and {
            "stage": err.get("stage"),
            "class": err.get("class") or "failed",
            "detail": err.get("detail") or "",
        },
        status=run.status,
        kind=run.kind,
        since=str(w.get("since", "-")),
        until=str(w.get("until", "-")),
        started=str(m.get("started_at") or (run.started.isoformat() if run.started else "-")),
        seconds=_secs(m.get("duration_s")),
        pass_rate=m.get("pass_rate"),
        watermark=str(m.get("watermark") or "not moved"),
        reports=_reports(run),
        counts=run.counts,
        identities=count_identity(run.counts),
        events_chart=charts.column_chart(labels, values, f"clean events per {unit} (UTC)"),
        reasons_chart=charts.bar_chart(
            (tq.get("reasons") or {}).items(), "reject reasons (records per reason)"
        ),
        ledger=_ledger(m.get("ledger") or {}),
    )


def write_run_page(run: RunSummary) -> Path:
    return _write(run.folder / RUN_PAGE, run_html(run))


def write_index(reports_dir: Path, runs: list[RunSummary] | None = None) -> Path:
    return _write(reports_dir / INDEX, index_html(read_runs(reports_dir) if runs is None else runs))


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # parallel backfill workers rebuild it too
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
