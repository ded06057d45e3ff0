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
import secrets
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import clock
from ..core.counts import IDENTITIES, SUMMARY_NAMES, RunCounts, label
from ..core.run_metrics import RunMetrics
from . import charts
from .files import write_text
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
# the index's counts, as ``status`` shows them: what came in, what was rejected, what was loaded (each way a
# record left before the load in the cell's tooltip; every count on the run's page)
INDEX_COUNTS = ("extracted", "rejected", "loaded")
LEFT_BEFORE_LOAD = tuple(k for k in SUMMARY_NAMES if k not in ("extracted", "loaded"))


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

    @property
    def pipeline(self) -> str:
        return (self.run_metrics and self.run_metrics.pipeline) or "default"

    def stage_states(self) -> dict[str, str]:
        """Each stage's outcome, as Airflow's grid shows a task's: ``succeeded``, ``failed`` or ``none`` (not run)."""
        ran = set(self.run_metrics.stage_seconds) if self.run_metrics else set()
        failed_in = self.error.get("stage")
        return {
            stage: "failed" if stage == failed_in else "succeeded" if stage in ran else "none"
            for stage, _ in STAGE_NOTEBOOKS
        }


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
    end = "%H:%M" if a.date() == b.date() or (b - a <= timedelta(days=1) and b.time() == time()) else fmt
    return f"{a:{fmt}} → {b:{end}}"


def _when(t: datetime | None) -> str:
    """``12-04 17:53`` this year, ``2025-12-04 17:53`` before it."""
    if t is None:
        return "-"
    return f"{t:%m-%d %H:%M}" if t.year == clock.now().year else f"{t:%Y-%m-%d %H:%M}"


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _secs(v: Any) -> str | None:
    return None if v is None else f"{v:.1f}"


def duration_text(v: Any) -> str:
    """``12.3 s``, ``2 min 05 s``, ``1 h 02 min``; ``-`` when unknown."""
    if v is None:
        return "-"
    v = float(v)
    if v < 60:
        return f"{v:.1f} s"
    m, sec = divmod(int(round(v)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def short_run_id(run_id: str) -> str:
    """The id's random tail (``20240504T100000-incremental-a1b2c3`` -> ``a1b2c3``), as ``status`` shows it."""
    return run_id.rsplit("-", 1)[-1] if "-" in run_id else run_id


def lateness(m: dict[str, Any]) -> tuple[int | None, float | None]:
    """How many late rows a run inserted and how late the latest arrived (seconds), when its ``metrics.json``
    carries lateness figures (``lateness``: a mapping; either may be absent)."""
    late = m.get("lateness")  # core/lateness.Lateness.to_json
    if not isinstance(late, dict):
        return None, None
    rows = late.get("late_rows")
    secs = late.get("lag_max_s")
    return (
        rows if isinstance(rows, int) and not isinstance(rows, bool) else None,
        float(secs) if isinstance(secs, (int, float)) and not isinstance(secs, bool) else None,
    )


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


def _index_counts(counts: dict[str, int]) -> dict[str, int | None]:
    """Read, rejected (in the transform and by quality) and loaded; a count the run never reached is None."""
    rejected = [counts[k] for k in ("rejected_transform", "rejected_quality") if k in counts]
    return {
        "extracted": counts.get("extracted"),
        "rejected": sum(rejected) if rejected else None,
        "loaded": counts.get("loaded"),
    }


def _index_row(r: RunSummary) -> dict[str, Any]:
    err = r.error
    started = r.started
    first = _first_line(err.get("detail")) if err else ""
    return {
        "run_id": r.run_id,
        "short_id": short_run_id(r.run_id),
        "status": r.status,
        "kind": r.kind,
        "pipeline": r.pipeline,
        "date": f"{started:%Y-%m-%d}" if started else "",
        "started": _when(started),
        "started_iso": started.isoformat() if started else "",
        "duration": duration_text(r.metrics.get("duration_s")),
        "page": f"{r.run_id}/{RUN_PAGE}" if (r.folder / RUN_PAGE).is_file() else None,
        "window": _short_window(r.metrics.get("window")),
        "error": err
        and {
            "class": err.get("class") or "",
            "stage": err.get("stage") or "-",
            "detail": first,
            "short": _clip(first, 70),
        },
        "counts": _index_counts(r.counts),
        "breakdown": ", ".join(f"{label(k)} {r.counts[k]:,}" for k in LEFT_BEFORE_LOAD if k in r.counts),
        "pass_rate": r.metrics.get("pass_rate"),
        "seconds": _secs(r.metrics.get("duration_s")),
        "code": code_label((r.metrics.get("ledger") or {}).get("code")).replace("+dirty", "*"),
        "code_text": code_text((r.metrics.get("ledger") or {}).get("code")),
        "reports": _reports(r),
    }


GRID_RUNS = 60  # the grid shows the newest runs, as Airflow's does


def _grid(runs: list[RunSummary]) -> dict[str, Any]:
    """Runs × stages, oldest on the left (Airflow's grid view), with each run's duration as a bar on top."""
    shown = list(reversed(runs[:GRID_RUNS]))
    longest = max((r.metrics.get("duration_s") or 0 for r in shown), default=0) or 1
    return {
        "stages": [stage for stage, _ in STAGE_NOTEBOOKS],
        "runs": [
            {
                "run_id": r.run_id,
                "short_id": short_run_id(r.run_id),
                "status": r.status,
                "page": f"{r.run_id}/{RUN_PAGE}" if (r.folder / RUN_PAGE).is_file() else None,
                "bar": max(2, round(40 * (r.metrics.get("duration_s") or 0) / longest)),
                "duration": duration_text(r.metrics.get("duration_s")),
                "states": r.stage_states(),
            }
            for r in shown
        ],
        "more": max(0, len(runs) - GRID_RUNS),
    }


def _trends(runs: list[RunSummary]) -> list[str]:
    """Charts across runs, oldest first: volume, pass rate and, when the runs' metrics carry it, lateness."""
    ordered = list(reversed(runs))
    labels = [f"{r.started:%m-%d %H:%M} {short_run_id(r.run_id)}" if r.started else r.run_id for r in ordered]
    failed = [r.status == "failed" for r in ordered]
    out = [
        charts.runs_chart(
            labels,
            [r.counts.get("extracted") for r in ordered],
            "records extracted per run",
            "records",
            failed,
        ),
        charts.runs_chart(
            labels, [r.counts.get("loaded") for r in ordered], "rows loaded per run", "rows", failed
        ),
        charts.runs_chart(
            labels,
            [
                None if r.metrics.get("pass_rate") is None else round(100 * r.metrics["pass_rate"], 2)
                for r in ordered
            ],
            "pass rate per run (%)",
            "%",
            failed,
            peak=100,
        ),
    ]
    late = [lateness(r.metrics) for r in ordered]
    if any(n is not None for n, _ in late):
        out.append(charts.runs_chart(labels, [n for n, _ in late], "late rows per run", "rows", failed))
    if any(s is not None for _, s in late):
        minutes = [None if s is None else round(s / 60, 1) for _, s in late]
        out.append(charts.runs_chart(labels, minutes, "latest late arrival per run (minutes)", "min", failed))
    return out


def index_html(runs: list[RunSummary]) -> str:
    totals: dict[str, int] = {}
    for r in runs:
        totals[r.status] = totals.get(r.status, 0) + 1
    return _page(
        "index.html.j2",
        rows=[_index_row(r) for r in runs],
        totals=sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])),
        grid=_grid(runs),
        trends=_trends(runs),
        pipelines=sorted({r.pipeline for r in runs}),
        statuses=sorted({r.status for r in runs}),
        kinds=sorted({r.kind for r in runs}),
        built=f"{clock.now():%Y-%m-%d %H:%M}",
        INDEX_COUNTS=INDEX_COUNTS,
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


def code_text(code: dict[str, Any] | None) -> str:
    """The code version in words: ``git commit 6381454 (with uncommitted changes)`` or ``eventpipe 0.1.0``."""
    if not code:
        return "unknown (not recorded)"
    if code.get("git_commit"):
        dirty = " (with uncommitted changes)" if code.get("dirty") else ""
        return f"git commit {str(code['git_commit'])[:12]}{dirty}"
    return f"eventpipe {code.get('package_version', 'unknown')} (installed package, no git checkout)"


@lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    """Every parameter's default (no params file, no ``-p``, no environment), as the ledger records values."""
    from ..settings import load_settings
    from ..settings_file import public_parameters

    return json.loads(json.dumps(public_parameters(load_settings(None, [], env={})), default=str))


def _shown(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=str)


def changed_parameters(params: dict[str, Any]) -> list[dict[str, str]]:
    """The parameters of a run that differ from their defaults, with where each was set: a ``-p`` override on
    the command line (the runner's own, e.g. a replay's, too) or the params file (``api.base_url`` may also
    come from ``API_BASE_URL``). Overrides first, in the order given; then the params file's values."""
    defaults = _defaults()
    overridden = [str(o).partition("=")[0].strip() for o in params.get("overrides") or ()]
    params_file = params.get("params_file")
    rows = []
    for key, value in params.items():
        if key in ("database", "params_file", "overrides") or key not in defaults:
            continue
        if json.dumps(value, sort_keys=True, default=str) == json.dumps(
            defaults[key], sort_keys=True, default=str
        ):
            continue
        if key in overridden:
            origin = "-p (command line)"
        elif key == "api.base_url":
            origin = f"API_BASE_URL or {params_file}" if params_file else "API_BASE_URL"
        else:
            origin = str(params_file) if params_file else "environment"
        rows.append({"key": key, "value": _shown(value), "default": _shown(defaults[key]), "origin": origin})
    order = {k: i for i, k in enumerate(overridden)}
    rows.sort(key=lambda r: (0, order[r["key"]]) if r["key"] in order else (1, 0))
    return rows


def _ledger(ledger: dict[str, Any]) -> dict[str, Any] | None:
    if not ledger:
        return None
    params = ledger.get("params") or {}
    return {
        "code": code_text(ledger.get("code")),
        "code_raw": json.dumps(ledger.get("code") or {}),
        "changed": changed_parameters(params),
        "params_file": params.get("params_file") or "none (the defaults)",
        "database": params.get("database") or "-",
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
        lateness=m.get("lateness"),
        events_chart=charts.column_chart(labels, values, f"clean events per {unit} (UTC)"),
        reasons_chart=charts.bar_chart(
            (tq.get("reasons") or {}).items(), "reject reasons (records per reason)"
        ),
        ledger=_ledger(m.get("ledger") or {}),
    )


def write_run_page(run: RunSummary) -> Path:
    return write_text(run.folder / RUN_PAGE, run_html(run))


def write_index(reports_dir: Path, runs: list[RunSummary] | None = None) -> Path:
    return write_text(reports_dir / INDEX, index_html(read_runs(reports_dir) if runs is None else runs))
