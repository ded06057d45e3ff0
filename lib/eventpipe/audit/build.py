"""Build a run's audit files (HTML, run page, ledger, metrics export, attestation) and the index; serve the folder.

The runner calls ``finish_run`` after each run; ``report [RUN_ID…]`` calls ``rebuild``
for older runs. ``serve`` is ``report --serve``: the reports folder only, on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.run_metrics import RunMetrics
from . import index
from .chain import record_derived
from .files import write_json, write_text
from .ledger import report_hashes
from .notebook_html import html_path, notebook_to_html, render_notebook

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = logging.getLogger(__name__)


class HtmlAhead:
    """The HTML of a run's finished stage notebooks, rendered in a background thread while its next stage runs
    (nbconvert's import and ~0.1 s a notebook, off the run's path). Nothing is written here: ``finish_run``
    writes each page where and when it always did, through the same atomic write; a notebook whose rendering
    failed, or whose file no longer holds what was rendered, is rendered again there, as without this."""

    def __init__(self, with_code: bool):
        self.with_code = with_code
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notebook-html")
        self._pages: dict[Path, Future[tuple[str, str]]] = {}

    def submit(self, notebook: Path) -> None:
        """Render ``notebook`` (a stage that ended: its file is final) in the background."""
        self._pages[notebook] = self._pool.submit(self._render, notebook)

    def _render(self, notebook: Path) -> tuple[str, str]:
        source = notebook.read_bytes()
        return _digest(source), render_notebook(source, self.with_code, _title(notebook.parent, notebook))

    def page(self, notebook: Path, with_code: bool) -> str | None:
        """The page rendered ahead for ``notebook`` as its file is now; None when there is none to use."""
        future = self._pages.get(notebook)
        if future is None or with_code != self.with_code:
            return None
        try:
            digest, page = future.result()
            return page if _digest(notebook.read_bytes()) == digest else None
        except Exception:  # noqa: BLE001 - rendered again by the caller, which reports what it raises
            return None

    def close(self) -> None:
        """Wait for the rendering under way, and drop what was not started (the run ended another way)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def _digest(source: bytes) -> str:
    return hashlib.sha256(source).hexdigest()


def _title(report_dir: Path, notebook: Path) -> str:
    return f"{report_dir.name} · {notebook.stem}"


def write_notebook_html(
    report_dir: Path, with_code: bool = False, ahead: HtmlAhead | None = None
) -> list[Path]:
    """HTML beside each executed notebook of one run (the pages ``ahead`` rendered, when given and current).
    A notebook that cannot be converted (half written by a killed run) is logged and skipped; a file that
    cannot be written (``OSError``: a full disk) stops it."""
    if ahead is not None:
        ahead.close()  # every page rendered ahead is ready, and nothing renders beside this thread
    out = []
    for nb in sorted(report_dir.glob("*.ipynb")):
        page = ahead.page(nb, with_code) if ahead is not None else None
        try:
            if page is not None:
                out.append(write_text(html_path(nb), page))
            else:
                out.append(notebook_to_html(nb, with_code=with_code, title=_title(report_dir, nb)))
        except OSError:
            raise
        except Exception as e:  # a half-written notebook must not stop the rest of the audit trail
            log.warning("no HTML for %s: %s: %s", nb, type(e).__name__, e)
    return out


def rebuild(
    reports_dir: Path, run_ids: Iterable[str] = (), with_code: bool = False, html: bool = True
) -> list[str]:
    """Re-make the HTML and run pages of ``run_ids`` (all runs when empty), then the index; return the ids.

    HTML and run pages are derived views, so their new hashes are recorded beside a sealed run's entry
    (``ledger.json``; in ``metrics.json`` for a run sealed before the chain); sealed files are never rewritten.
    """
    wanted = set(run_ids)
    runs = index.read_runs(reports_dir)
    missing = wanted - {r.run_id for r in runs}
    if missing:
        from ..errors import SettingsError

        raise SettingsError(f"no report folder for run(s) {', '.join(sorted(missing))} under {reports_dir}")
    done = []
    for run in runs:
        if wanted and run.run_id not in wanted:
            continue
        if html:
            write_notebook_html(run.folder, with_code=with_code)
        index.write_run_page(run)
        if not record_derived(run.folder) and html:
            record_html_hashes(run)
        done.append(run.run_id)
    index.write_index(reports_dir, runs)
    return done


def record_html_hashes(run: index.RunSummary) -> None:
    """A run from before the ledger chain: its rebuilt HTML's hashes go into its ``metrics.json`` ledger."""
    ledger = run.run_metrics.ledger if run.run_metrics else None
    if not ledger:
        return
    current = report_hashes(run.folder)
    recorded = ledger.setdefault("reports_sha256", {})
    for name in list(recorded):
        if name.endswith(".html"):
            recorded.pop(name)
    recorded.update({k: v for k, v in current.items() if k.endswith(".html")})
    write_json(run.folder / "metrics.json", run.metrics)


STAGE_NAMES = ("extract", "transform_quality", "load")


def stage_manifests(run_dir: Path, have: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The stage manifests a failed run left in ``runs/<run_id>/`` for stages that glued no scrap
    (a failed quality gate still wrote its counts and reasons there)."""
    out = {}
    for stage in STAGE_NAMES:
        path = run_dir / f"{stage}.json"
        if stage not in have and path.is_file():
            try:
                out[stage] = json.loads(path.read_text())
            except ValueError:
                continue
    return out


def finish_run(
    settings: Any,
    store: Any,
    metrics: RunMetrics,
    report_dir: Path,
    source_notebooks: Iterable[Path],
    signing_key: Ed25519PrivateKey | None = None,
    params: dict[str, Any] | None = None,
    unwritten: Iterable[str] = (),
    html_ahead: HtmlAhead | None = None,
) -> RunMetrics:
    """Everything the audit trail adds once a run has ended, succeeded or failed: HTML of its notebooks,
    its ledger entry (``metrics.json`` and ``pipeline_runs``), ``metrics.prom``, its page and the index,
    then the folder sealed in the ledger chain (``ledger.json``) and, with ``signing_key`` (an Ed25519
    private key), its signed attestation. ``params``: the run's own resolved parameters when they are not
    ``settings``' (a run completed later from its record). ``html_ahead``: the notebook pages the runner had
    rendered while the run went on (``HtmlAhead``).

    The run's outcome is already recorded, so a file that cannot be written (``OSError``: a full disk, a
    folder not writable) never stops the others; then, or when ``unwritten`` names files the run could not
    write itself (its ``run.log``), the folder is not sealed and ``AuditIncomplete`` names them:
    ``report RUN_ID`` completes it later. Other trouble (a database that cannot be written, a notebook that
    cannot be converted) is logged. The seal comes last, when every file the run writes is in its folder
    (the runner closed ``run.log`` before).
    """
    from ..errors import AuditIncomplete
    from .attest import attest
    from .chain import seal
    from .ledger import ledger_entry
    from .metrics_export import PROM_FILE, write_prom

    failed: dict[str, OSError] = {}

    def attempt(what: str, step: Any) -> None:
        try:
            step()
        except OSError as e:
            failed[what] = e

    try:
        report_dir.mkdir(parents=True, exist_ok=True)  # a folder deleted mid-run is made again
    except OSError as e:
        raise AuditIncomplete(metrics.run_id, [f"its report folder {report_dir}"], _os_reason(e)) from None
    if settings.reports.html:
        attempt(
            "notebook HTML",
            lambda: write_notebook_html(report_dir, with_code=settings.reports.with_code, ahead=html_ahead),
        )
    entry = ledger_entry(settings, source_notebooks, report_dir, params)
    metrics.ledger = entry
    try:
        store.record_ledger(metrics.run_id, entry)
    except Exception as e:  # noqa: BLE001 - the metrics.json copy still holds it
        log.warning("ledger entry not stored in pipeline_runs: %s: %s", type(e).__name__, e)
    attempt("metrics.json", lambda: write_json(report_dir / "metrics.json", metrics.to_json()))
    if settings.reports.prometheus:
        try:
            attempt(
                PROM_FILE, lambda: write_prom(metrics, report_dir / PROM_FILE, _last_success(store, metrics))
            )
        except Exception as e:  # noqa: BLE001
            log.warning("metrics.prom not written: %s: %s", type(e).__name__, e)
    if settings.reports.html:
        try:
            attempt("run page and index", lambda: _pages(report_dir, metrics.run_id))
        except Exception as e:  # noqa: BLE001
            log.warning("run page or index not rebuilt: %s: %s", type(e).__name__, e)
    names = [*unwritten, *failed]
    if not names:
        try:
            sealed = seal(report_dir, entry, store)
            if signing_key is not None:
                attest(report_dir, sealed, metrics, entry["params"], signing_key)
        except OSError as e:
            failed["ledger entry"] = e
            names.append("ledger entry")
    if names:
        reason = next(iter(failed.values()), None)
        raise AuditIncomplete(metrics.run_id, names, _os_reason(reason) if reason else "not written")
    return metrics


def _pages(report_dir: Path, run_id: str) -> None:
    reports_dir = report_dir.parent
    runs = index.read_runs(reports_dir)
    for run in runs:
        if run.run_id == run_id:
            index.write_run_page(run)
    index.write_index(reports_dir, runs)


def _os_reason(e: OSError) -> str:
    """``[Errno 28] No space left on device: '/reports/x/metrics.json'`` in words: ``No space left on device``
    (the folder is said once, in the message around it)."""
    return e.strerror or type(e).__name__


def _last_success(store: Any, metrics: RunMetrics) -> float | None:
    """This run's finish when it succeeded, else the newest successful run of its kind's (None: never)."""
    from datetime import datetime

    if metrics.status == "succeeded" and metrics.finished_at:
        return datetime.fromisoformat(metrics.finished_at.replace("Z", "+00:00")).timestamp()
    finished = store.last_success(metrics.kind)
    return finished.timestamp() if finished else None
