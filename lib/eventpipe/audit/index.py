"""``reports/index.html`` (every run, filterable) and ``reports/<run_id>/run.html`` (one run's page).

Both are single files with inline CSS and JavaScript: they work opened straight from
the file system, offline. Every value from a run (ids, errors, parameters, reasons)
is escaped, and a Content-Security-Policy lets only the page's own script run, so
markup in event data shows as text and never executes.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

from ..core.counts import IDENTITIES, SUMMARY_NAMES, RunCounts, label
from ..core.run_metrics import RunMetrics
from . import charts
from .ledger import code_label

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


def _n(v: Any) -> str:
    return "-" if v is None else f"{v:,}" if isinstance(v, int) else escape(str(v))


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:.2%}"


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


def _links(run: RunSummary, prefix: str) -> str:
    """Links to the run's files; ``prefix`` is the path from the page to the run folder."""
    items = []
    for _stage, stem in STAGE_NOTEBOOKS:
        nb = run.folder / f"{stem}.ipynb"
        if nb.is_file():
            html_link = (
                f'<a href="{escape(prefix + stem)}.html">{escape(stem)}</a> '
                if (run.folder / f"{stem}.html").is_file()
                else escape(stem) + " "
            )
            items.append(f'{html_link}(<a href="{escape(prefix + stem)}.ipynb">.ipynb</a>)')
    for name in ("metrics.json", "run.log", "metrics.prom"):
        if (run.folder / name).is_file():
            items.append(f'<a href="{escape(prefix + name)}">{escape(name)}</a>')
    return " · ".join(items)


PAGE_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em;margin:0 0 .4em} h2{font-size:1.15em;margin:1.4em 0 .4em}
table{border-collapse:collapse;font-size:.9em} th,td{border-bottom:1px solid #ddd;padding:.3em .55em;
text-align:left;vertical-align:top} th{background:#f4f4f4;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums} code,.mono{font-family:ui-monospace,monospace}
.status-succeeded{color:#1a7f37;font-weight:600}.status-failed{color:#b00020;font-weight:600}
.status-running,.status-unknown{color:#9a6700;font-weight:600}
.filters{display:flex;gap:1em;flex-wrap:wrap;align-items:end;margin:.8em 0}
.filters label{display:flex;flex-direction:column;font-size:.85em;gap:.2em}
.banner{border:2px solid #b00020;background:#fdecee;color:#7a0012;padding:.7em 1em;margin:0 0 1em;font-size:1.05em}
.ok{color:#1a7f37}.bad{color:#b00020} .muted{color:#666} .err{min-width:16em;max-width:30em;overflow-wrap:anywhere} .nowrap{white-space:nowrap}
"""


def _page(title: str, body: str, script: str = "") -> str:
    nonce = secrets.token_urlsafe(16)
    csp = (
        f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'nonce-{nonce}'; "
        "base-uri 'none'; form-action 'none'"
    )
    js = f'<script nonce="{nonce}">{script}</script>' if script else ""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{PAGE_CSS}</style></head>"
        f"<body>{body}{js}</body></html>\n"
    )


# -- the index ------------------------------------------------------------------------------------

INDEX_JS = """
(function(){
  var rows = Array.prototype.slice.call(document.querySelectorAll('#runs tbody tr'));
  var q = function(id){ return document.getElementById(id); };
  function apply(){
    var st = q('f-status').value, kd = q('f-kind').value, s = q('f-search').value.trim().toLowerCase();
    var from = q('f-from').value, to = q('f-to').value, shown = 0;
    rows.forEach(function(r){
      var d = r.getAttribute('data-date');
      var ok = (!st || r.getAttribute('data-status') === st) && (!kd || r.getAttribute('data-kind') === kd)
        && (!s || r.getAttribute('data-run').toLowerCase().indexOf(s) >= 0)
        && (!from || d >= from) && (!to || d <= to);
      r.hidden = !ok; if (ok) shown++;
    });
    q('shown').textContent = String(shown);
  }
  ['f-status','f-kind','f-search','f-from','f-to'].forEach(function(id){
    q(id).addEventListener('input', apply); q(id).addEventListener('change', apply);
  });
  apply();
})();
"""


def _options(values: Iterable[str]) -> str:
    return "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in sorted(set(values)))


def index_html(runs: list[RunSummary]) -> str:
    rows = []
    for r in runs:
        c = r.counts
        err = r.error
        failure = ""
        if err:
            failure = (
                f"<b>{escape(err.get('class') or '')}</b> in {escape(err.get('stage') or '-')}: "
                f"{escape(_clip(_first_line(err.get('detail'))))}"
            )
        started = r.started
        prefix = r.run_id + "/"
        run_link = (
            f'<a href="{escape(prefix + RUN_PAGE)}" class="mono">{escape(r.run_id)}</a>'
            if (r.folder / RUN_PAGE).is_file()
            else f'<span class="mono">{escape(r.run_id)}</span>'
        )
        rows.append(
            f'<tr data-run="{escape(r.run_id)}" data-status="{escape(r.status)}" '
            f'data-kind="{escape(r.kind)}" data-date="{f"{started:%Y-%m-%d}" if started else ""}">'
        )
        rows.append(
            f"<td>{run_link}</td><td>{escape(r.kind)}</td>"
            f'<td class="mono nowrap">{escape(_short_window(r.metrics.get("window")))}</td>'
            f'<td class="status-{escape(r.status)}">{escape(r.status)}</td><td class="err">{failure}</td>'
            + "".join(f'<td class="num">{_n(c.get(k))}</td>' for k in COUNT_COLUMNS)
            + f'<td class="num">{_pct(r.metrics.get("pass_rate"))}</td>'
            f'<td class="num">{_n(_secs(r.metrics.get("duration_s")))}</td>'
            f'<td class="mono">{escape(code_label((r.metrics.get("ledger") or {}).get("code")))}</td>'
            f"<td>{_links(r, prefix)}</td></tr>"
        )
    body = (
        "<h1>eventpipe runs</h1>"
        f'<p class="muted">{len(runs)} run(s); <span id="shown">{len(runs)}</span> shown. Built '
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Times are UTC.</p>"
        '<div class="filters">'
        f'<label>status<select id="f-status"><option value="">all</option>{_options(r.status for r in runs)}'
        "</select></label>"
        f'<label>kind<select id="f-kind"><option value="">all</option>{_options(r.kind for r in runs)}</select></label>'
        '<label>started from<input type="date" id="f-from"></label>'
        '<label>started to<input type="date" id="f-to"></label>'
        '<label>run id<input type="search" id="f-search" placeholder="search run id"></label></div>'
        '<table id="runs"><thead><tr><th>run</th><th>kind</th><th>window (UTC)</th><th>status</th>'
        "<th>failure</th>"
        + "".join(f"<th>{escape(label(k))}</th>" for k in COUNT_COLUMNS)
        + "<th>pass rate</th><th>seconds</th><th>code</th>"
        f"<th>reports</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    return _page("eventpipe runs", body, INDEX_JS)


def _secs(v: Any) -> str | None:
    return None if v is None else f"{v:.1f}"


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


def run_html(run: RunSummary) -> str:
    m = run.metrics
    err = run.error
    parts = [
        f'<p><a href="../{INDEX}">← all runs</a></p><h1>run <span class="mono">{escape(run.run_id)}</span></h1>'
    ]
    if run.status == "failed":
        parts.append(
            f'<div class="banner" id="failure-banner"><b>This run FAILED'
            f"{' in stage ' + escape(err['stage']) if err.get('stage') else ''}: "
            f"{escape(err.get('class') or 'failed')}.</b><br>{escape(err.get('detail') or '')}</div>"
        )
    w = m.get("window") or {}
    parts.append(
        "<table>"
        + "".join(
            f"<tr><th>{escape(k)}</th><td>{v}</td></tr>"
            for k, v in (
                ("status", f'<span class="status-{escape(run.status)}">{escape(run.status)}</span>'),
                ("kind", escape(run.kind)),
                (
                    "window (UTC)",
                    f'<span class="mono">[{escape(str(w.get("since", "-")))}, '
                    f"{escape(str(w.get('until', '-')))})</span>",
                ),
                (
                    "started",
                    escape(str(m.get("started_at") or (run.started.isoformat() if run.started else "-"))),
                ),
                ("duration", f"{_n(_secs(m.get('duration_s')))} s"),
                ("pass rate", _pct(m.get("pass_rate"))),
                ("watermark after", escape(str(m.get("watermark") or "not moved"))),
                ("reports", _links(run, "")),
            )
        )
        + "</table>"
    )

    c = run.counts
    parts.append("<h2>Counts</h2>")
    if c:
        parts.append(
            "<table>"
            + "".join(f'<tr><th>{escape(k)}</th><td class="num">{_n(v)}</td></tr>' for k, v in c.items())
            + "</table><ul>"
        )
        for text, ok in count_identity(c):
            mark = '<span class="ok">✓ holds</span>' if ok else '<span class="bad">✗ does not add up</span>'
            parts.append(f'<li class="mono">{escape(text)} {mark}</li>')
        parts.append("</ul>")
    else:
        parts.append('<p class="muted">no counts: the run stopped before its stages reported any.</p>')

    tq = run.stage_metrics("transform_quality")
    parts.append("<h2>Charts</h2>")
    labels, values, unit = charts.events_over_time(tq.get("per_hour") or {})
    parts.append(charts.column_chart(labels, values, f"clean events per {unit} (UTC)"))
    parts.append(charts.bar_chart((tq.get("reasons") or {}).items(), "reject reasons (records per reason)"))

    ledger = m.get("ledger") or {}
    parts.append("<h2>Ledger</h2>")
    if ledger:
        code = ledger.get("code") or {}
        rows = [
            ("code version", escape(json.dumps(code))),
            ("user", escape(str(ledger.get("user")))),
            ("host", escape(str(ledger.get("host")))),
            ("parameters SHA-256", f'<span class="mono">{escape(str(ledger.get("params_sha256")))}</span>'),
        ]
        rows += [
            (f"notebook {escape(k)}", f'<span class="mono">{escape(v)}</span>')
            for k, v in (ledger.get("notebooks_sha256") or {}).items()
        ]
        rows += [
            (f"report {escape(k)}", f'<span class="mono">{escape(v)}</span>')
            for k, v in (ledger.get("reports_sha256") or {}).items()
        ]
        parts.append("<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>")
        parts.append(
            "<h2>Parameters</h2><table>"
            + "".join(
                f'<tr><th class="mono">{escape(k)}</th><td class="mono">{escape(json.dumps(v, default=str))}</td></tr>'
                for k, v in (ledger.get("params") or {}).items()
            )
            + "</table>"
        )
    else:
        parts.append('<p class="muted">no ledger entry (a run from before the ledger).</p>')
    return _page(f"run {run.run_id}", "".join(parts))


def write_run_page(run: RunSummary) -> Path:
    return _write(run.folder / RUN_PAGE, run_html(run))


def write_index(reports_dir: Path, runs: list[RunSummary] | None = None) -> Path:
    return _write(reports_dir / INDEX, index_html(read_runs(reports_dir) if runs is None else runs))


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # parallel backfill workers rebuild it too
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
