"""One function per notebook: what ``01_extract``, ``02_transform_quality`` and ``03_load`` do.

Each stage reads and writes only ``runs/<run_id>/`` (Parquet parts plus a small JSON manifest, see
``rundir``), so a notebook can be rerun on its own, and the notebooks stay a parameters cell, a call
here, and a few cells that show the result (``views``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .. import clock
from ..core import ahead
from ..core.counts import RunCounts
from ..core.lateness import Lateness, late_rule, measure
from ..core.process import Rules, process, transform_workers
from ..core.quality import gate
from ..demo import server as demo
from ..errors import CountsMismatch, QualityGateFailed, SettingsError
from ..jsonio import gc_paused
from ..logs import redact_console
from ..logs import setup_logging as _setup_logging
from ..rundir import RunDir, check_run_id, new_run_id
from ..settings import (
    PathSettings,
    Secret,
    Settings,
    default_database_url,
    iso,
    load_settings,
    mask_url,
    parse_window,
    redact,
    resolve_path,
    shown,
)
from ..settings_file import RunSettings, scratch_database_url
from ..source.client import SourceClient
from ..source.config import SourceConfig
from ..source.extract import extract_window
from ..source.window import WindowSpec
from ..storage import early_load
from ..storage.keys import stored_keys
from ..storage.loaders import loader_for
from ..storage.lock import ORCHESTRATED_KINDS
from ..storage.store import Store
from ..testing.inject import checkpoint

__all__ = [
    "StageContext",
    "TransformSummary",
    "check_gate",
    "extract",
    "load",
    "setup_logging",
    "transform_quality",
]

log = logging.getLogger(__name__)


def setup_logging(level: int = logging.INFO) -> None:
    """The notebook's log lines (``logs.setup_logging``), and tables that show long values whole: pandas
    cuts cells at 50 characters, which hides the timestamps and reasons the samples are there to show."""
    _setup_logging(level)
    pd.set_option("display.max_colwidth", 400)


def run_folder(settings: Settings, run_id: str, run_dir: str = "") -> Path:
    """The run's working folder, created. The stages empty ``raw/`` and ``clean/`` in it, so:

    * no ``run_dir``: ``paths.runs_dir/<run_id>`` (``run_id`` is a plain name, see ``check_run_id``);
    * a relative ``run_dir`` (relative to the project, like every path setting) must resolve, ``..`` and
      symbolic links followed, to a folder strictly inside ``paths.runs_dir``;
    * an absolute ``run_dir`` is the analyst's explicit choice (as papermill's output path is) and is used
      as given.
    """
    root = settings.path("runs_dir").resolve()
    if run_dir and Path(run_dir).expanduser().is_absolute():
        path = Path(run_dir).expanduser()
    else:
        path = (resolve_path(run_dir) if run_dir else root / run_id).resolve()
        if path == root or not path.is_relative_to(root):
            raise SettingsError(
                f"run_dir {shown(str(run_dir or path))} is not inside paths.runs_dir ({root}): leave run_dir "
                "empty, give an absolute folder, or set -p paths.runs_dir=<folder>"
            )
    path.mkdir(parents=True, exist_ok=True)
    return path


def _flag(name: str, value: Any) -> bool:
    """A notebook's bool parameter: papermill's ``-p`` passes ``True``/``False`` as bools, ``false`` as text."""
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise SettingsError(
        f"{name} {shown(str(value))} is not true or false: pass -p {name} True or -p {name} False"
    )


def _runs_root() -> Path:
    """``paths.runs_dir`` as the defaults have it: where 02 and 03 look for runs by id, by hand."""
    return resolve_path(PathSettings().runs_dir).resolve()


def newest_manual_run(root: Path) -> Path:
    """The folder of the manual run under ``root`` whose settings file was written last (01 writes it first)."""
    newest: tuple[float, Path] | None = None
    for folder in root.iterdir() if root.is_dir() else ():
        file = RunDir(folder).settings_file
        try:
            if json.loads(file.read_text(encoding="utf-8")).get("kind") != "manual":
                continue
            mtime = file.stat().st_mtime
        except (OSError, ValueError, AttributeError):
            continue  # a folder being written or removed, or not a run's: not a candidate
        if newest is None or mtime > newest[0]:
            newest = (mtime, folder)
    if newest is None:
        raise SettingsError(
            f"no manual run in {root}: run 01_extract first, or pass the run_id (or run_dir) of the run to continue"
        )
    return newest[1]


def check_demo_database(settings: Settings) -> None:
    """Without an API, 01 serves the bundled demo API: refuse that unless the database is the demo's too.

    The demo's database is the project's local SQLite file (``DATABASE_URL`` unset or naming that file) or a
    run's scratch file; any other database (PostgreSQL, another SQLite file) would get synthetic events.
    """
    if settings.api.base_url or settings.database_url.reveal() == default_database_url():
        return
    raise SettingsError(
        "no events API is set (API_BASE_URL, or api.base_url in the params) while scratch is off: 01_extract "
        "would load the bundled demo API's synthetic events into "
        f"{mask_url(settings.database_url.reveal())} (DATABASE_URL); export API_BASE_URL (and API_KEY), or set "
        "scratch = True to try the demo in a scratch database"
    )


@dataclass
class StageContext:
    """What every stage needs: settings, the window, the run id, its working folder and what kind of run it is."""

    settings: Settings
    run_id: str
    since: datetime
    until: datetime
    run: RunDir
    kind: str = "manual"
    replay: bool = False
    advance_watermark: bool = False

    @classmethod
    def from_parameters(
        cls,
        since: str,
        until: str,
        run_id: Any = "",
        run_dir: str = "",
        params_file: str = "",
        overrides: list[str] | tuple[str, ...] = (),
        scratch: bool = True,
        settings_file: str = "",
    ) -> StageContext:
        """The context 01's parameters describe. With ``settings_file`` (the runner sets it), the run's resolved
        settings file is the whole description and the other parameters are not used.

        By hand, this starts a run of kind ``manual``: its own id (a new ``<time>-manual-<hex>`` when
        ``run_id`` is empty), its database (the run's scratch file when ``scratch``, else ``DATABASE_URL``),
        and its settings file in its folder, which 02 and 03 then read (``from_run_folder``).
        """
        if settings_file:
            return cls.from_settings_file(settings_file)
        resolved = load_settings(params_file or None, list(overrides or ()))
        # DATABASE_URL's password stays redacted even when the run loads into its scratch file instead
        redact_console(lambda text: redact(text, resolved))
        try:
            s, u = parse_window(since, until)
        except ValueError as e:
            raise SettingsError(f"window: {e}") from None
        scratch = _flag("scratch", scratch)
        if not scratch:
            check_demo_database(resolved)
        # papermill -p guesses types: an id like 123 must stay text
        rid = check_run_id(str(run_id)) if run_id != "" else new_run_id("manual")
        run = RunDir(run_folder(resolved, rid, run_dir))
        settings = resolved
        if scratch:
            settings = dataclasses.replace(resolved, database_url=Secret(scratch_database_url(run.path)))
        RunSettings(settings, rid, "manual", s, u, scratch=scratch).write(run.settings_file)
        return cls(settings, rid, s, u, run)

    @classmethod
    def from_run_folder(
        cls, run_id: Any = "", run_dir: str = "", since: str = "", until: str = "", settings_file: str = ""
    ) -> StageContext:
        """The context of 02 and 03: the settings file of the run 01 started, found by ``settings_file`` (the
        runner's), ``run_dir``, ``run_id`` (under the default ``paths.runs_dir``) or, with none of them, as
        the newest manual run there. ``since`` and ``until`` by hand may only repeat the run's window."""
        if settings_file:
            return cls.from_settings_file(settings_file)
        if run_dir:
            folder = resolve_path(run_dir)
        elif run_id != "":
            folder = _runs_root() / check_run_id(str(run_id))
        else:
            folder = newest_manual_run(_runs_root())
        file = RunDir(folder).settings_file
        if not file.is_file():
            raise SettingsError(
                f"{folder} holds no run settings file: run 01_extract for this run first, or pass the run_id "
                "(or run_dir) that 01_extract printed"
            )
        ctx = cls.from_settings_file(file)
        ctx.check_window(since, until)
        return ctx

    @classmethod
    def from_settings_file(cls, path: str | Path) -> StageContext:
        """The context of a run whose settings were resolved once (by the runner, or by 01 opened by hand): its
        settings file (``RunDir.settings_file``) and this kernel's environment, which holds the secrets; the
        run's folder is the one the file is in."""
        file = resolve_path(path)
        resolved = RunSettings.read(file)
        settings = resolved.settings
        redact_console(lambda text: redact(text, settings))
        rid = check_run_id(resolved.run_id)
        run = RunDir(run_folder(settings, rid, str(file.parent)))
        return cls(
            settings,
            rid,
            resolved.since,
            resolved.until,
            run,
            resolved.kind,
            resolved.replay,
            resolved.advance_watermark,
        )

    def check_window(self, since: str, until: str) -> None:
        """Refuse a window given by hand that is not the run's own (an empty bound means the run's)."""
        if not (since or until):
            return
        try:
            s, u = parse_window(since or iso(self.since), until or iso(self.until))
        except ValueError as e:
            raise SettingsError(f"window: {e}") from None
        if (s, u) != (self.since, self.until):
            raise SettingsError(
                f"run {self.run_id} covers [{iso(self.since)}, {iso(self.until)}) (its settings file, written by "
                f"01_extract), but this notebook was given [{iso(s)}, {iso(u)}): leave since and until empty, "
                "or run 01_extract for the other window"
            )

    @property
    def run_dir(self) -> Path:
        return self.run.path

    def read_manifest(self, stage: str) -> dict[str, Any]:
        return self.run.read_manifest(stage, self.run_id)


# -- 01 extract ---------------------------------------------------------------------------------


@contextmanager
def source_client(settings: Settings) -> Iterator[SourceClient]:
    """A client for the configured API; without one, the bundled demo API served from this process."""
    with nullcontext(settings) if settings.api.base_url else demo.serving(settings) as s:
        yield SourceClient(s.api.base_url, SourceConfig.from_settings(s, os.environ), s.api)


def extract(ctx: StageContext) -> dict[str, Any]:
    """Fetch every page of the window into ``raw/part-*.parquet``; return the stage metrics.

    On the arrival clock, a window of event time asks for its arrivals up to ``until`` plus the horizon
    (``source.window``), once the API can have them all."""
    spec = WindowSpec.parse(ctx.settings.source.window)
    spec.check_complete(ctx.kind, ctx.since, ctx.until, clock.now() - ctx.settings.window.settle)
    since, until = spec.request_window(ctx.kind, ctx.since, ctx.until)
    early = _TransformAhead(ctx)
    progress = ctx.run.progress_writer()

    def on_page(*args: Any, **kwargs: Any) -> None:
        progress(*args, **kwargs)
        early.page()

    try:
        with source_client(ctx.settings) as client, gc_paused():
            log.info("extracting [%s, %s) from %s", iso(since), iso(until), client.url)
            res = extract_window(
                client,
                since,
                until,
                ctx.run.fresh("raw"),
                ctx.settings.load.batch_size,
                on_page=on_page,
                on_part=early.part_written,
            )
    except BaseException:
        ahead.discard()
        raise
    metrics = {
        "stage": "extract",
        "extracted": res.records,
        "since": res.since,
        "until": res.until,
        "seconds": round(res.seconds, 3),
        "parts": len(res.parts),
        **res.stats,
    }
    ctx.run.write_manifest("extract", metrics)
    return metrics


class _TransformAhead:
    """Starts the transform's pool once the extract has written three parts (a run of fewer transforms in
    the kernel alone, see ``transform_workers``) and hands it each finished part (``core.ahead``), for a run
    whose notebooks share one kernel (or stage functions called in one process): a notebook run by hand,
    or in a kernel of its own, would leave the pool to a kernel that never transforms."""

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.on = ctx.kind != "manual" and ctx.settings.runner.shared_kernel
        self.written: list[tuple[int, Path]] = []
        self.ahead: ahead.Ahead | None = None

    def part_written(self, index: int, path: Path) -> None:
        if not self.on:
            return
        self.written.append((index, path))
        if self.ahead is None and len(self.written) >= 3:
            self.ahead = ahead.start(
                self.ctx.run.path, transform_rules(self.ctx), self.ctx.settings.runner.transform_workers
            )
            if self.ahead is None:
                self.on = False
                return
            for i, p in self.written[:-1]:
                self.ahead.part_written(i, p)
        if self.ahead is not None:
            self.ahead.part_written(index, path)

    def page(self) -> None:
        if self.ahead is not None:
            self.ahead.top_up()


# -- 02 transform + quality ---------------------------------------------------------------------


def transform_rules(ctx: StageContext, now: datetime | None = None, replay: bool = False) -> Rules:
    """The record and quality rules of the run's transform: the settings', "now", and the window kept."""
    kept = WindowSpec.parse(ctx.settings.source.window).kept_window(ctx.kind, ctx.since, ctx.until)
    return dataclasses.replace(Rules.of(ctx.settings, now or clock.now()), window=None if replay else kept)


@dataclass(frozen=True)
class TransformSummary:
    """What the transform notebook shows: its metrics, the reject reasons, clean events per hour."""

    metrics: dict[str, Any]
    reasons: Counter
    per_hour: pd.Series


def transform_quality(
    ctx: StageContext, now: datetime | None = None, replay: bool = False
) -> TransformSummary:
    """The record and quality rules over the run's raw parts (``core.process``) and the gate's verdict in the
    manifest. It does not raise on a failed gate: the notebook shows the reasons and samples first, then
    ``check_gate`` stops it."""
    q = ctx.settings.quality
    rules = transform_rules(ctx, now, replay)
    workers = transform_workers(ctx.settings.runner.transform_workers, len(ctx.run.parts("raw")))
    early = ahead.take(ctx.run.path, rules, replay)
    copying = _early_load(ctx, replay)
    try:
        result = process(
            ctx.run,
            rules,
            replay=replay,
            workers=workers,
            ahead=early,
            on_final=copying,
        )
    except BaseException:
        early_load.discard()
        raise
    if copying is not None:
        copying.transform_done()
    c = result.counts
    metrics = {
        "stage": "transform_quality",
        **c.as_dict(),
        "pass_rate": round(result.pass_rate, 6),
        "min_pass_rate": q.min_pass_rate,
        "reasons": dict(result.reasons.most_common()),
        "seconds": round(result.seconds, 3),
        "workers": result.workers,
        "parts_prepared_ahead": result.ahead,
        "gate": "passed" if result.pass_rate >= q.min_pass_rate else "failed",
    }
    # clean events per hour, for the run page's chart (drawn when the report is built, not here)
    metrics["per_hour"] = {iso(t.to_pydatetime()): int(n) for t, n in result.per_hour.items()}
    if metrics["gate"] == "failed":  # nothing may load: the rows copied so far are rolled back
        early_load.discard()
    ctx.run.write_manifest("transform_quality", metrics)
    if replay:
        ctx.run.replayed.write_text(json.dumps(result.settled_hashes))
    log.info(
        "transformed %d of %d records: %d passed, %d rejected (transform %d, quality %d), %d duplicates; "
        "pass rate %.2f%%",
        c.transformed,
        c.extracted,
        c.passed,
        c.rejected,
        c.rejected_transform,
        c.rejected_quality,
        c.duplicates,
        result.pass_rate * 100,
    )
    return TransformSummary(metrics, result.reasons, result.per_hour)


def _early_load(ctx: StageContext, replay: bool) -> early_load.EarlyLoad | None:
    """The load's ``COPY`` started beside this transform (``storage.early_load``), when the load stage will
    run in this same process next: the runner's shared kernel (or stage functions called in one process),
    not a notebook run by hand, an Airflow task or a replay."""
    if (
        replay
        or ctx.kind == "manual"
        or ctx.kind in ORCHESTRATED_KINDS
        or not ctx.settings.runner.shared_kernel
    ):
        early_load.discard()
        return None
    return early_load.start(ctx.settings, ctx.run.path, ctx.run_id)


def check_gate(ctx: StageContext, summary: TransformSummary) -> None:
    """Raise ``QualityGateFailed`` when the pass rate is under ``quality.min_pass_rate``: nothing is loaded."""
    gate(summary.metrics["pass_rate"], ctx.settings.quality, summary.reasons)


# -- 03 load ------------------------------------------------------------------------------------


def load(ctx: StageContext, advance_watermark: bool = False, replay: bool = False) -> dict[str, Any]:
    """Upsert the clean rows and dead letters, finish the run record, move the watermark: one transaction."""
    try:
        return _load(ctx, advance_watermark, replay)
    finally:
        early_load.discard()  # rows copied during the transform that this load did not take: rolled back


def _load(ctx: StageContext, advance_watermark: bool, replay: bool) -> dict[str, Any]:
    tq = ctx.read_manifest("transform_quality")
    if tq.get("gate") == "failed":  # 02 stopped at its gate (or was stopped before it): nothing may load
        top = dict(Counter(tq.get("reasons") or {}).most_common(5))
        raise QualityGateFailed(tq["pass_rate"], tq["min_pass_rate"], top)
    extracted = ctx.read_manifest("extract")["extracted"] if not replay else tq["extracted"]
    if extracted != tq["extracted"]:
        raise CountsMismatch(f"extract wrote {extracted} records but transform read {tq['extracted']}")
    counts = RunCounts.from_mapping(tq)
    counts.check()
    store = Store(ctx.settings)
    store.create_schema()
    replayed = json.loads(ctx.run.replayed.read_text()) if replay else []
    lateness = None if replay else _lateness(ctx, store)
    run_values = {
        **counts.as_dict(),
        "pass_rate": tq["pass_rate"],
        "kind": ctx.kind,
        "window_since": ctx.since,
        "window_until": ctx.until,
    }
    clean = [str(p) for p in ctx.run.parts("clean")]
    # the rows copied during this run's transform, when they are exactly its clean files (else None)
    early = early_load.take(ctx.run.path, ctx.run_id, clean) if not replay else None
    try:
        loaded, seconds = loader_for(store).load(
            clean,
            [str(p) for p in ctx.run.parts("rejects")],
            ctx.run_id,
            run_values=run_values,
            watermark=("incremental", ctx.until) if advance_watermark else None,
            replayed_hashes=replayed,
            expected_rows=tq["passed"],
            early=early,
        )
    finally:
        if early is not None:
            early.close()  # rolled back, unless the load committed it
        store.dispose()
    checkpoint("load.after_commit")  # the run is loaded from here on, whatever stops the notebook
    counts = counts.with_load(loaded)
    counts.check()
    metrics = {
        "stage": "load",
        **counts.as_dict(),
        "pass_rate": tq["pass_rate"],
        "seconds": round(seconds, 3),
        "database": store.masked_url,
        "watermark": iso(ctx.until) if advance_watermark else None,
        **early_load.metrics(early),
    }
    if lateness is not None:
        metrics["lateness"] = lateness.to_json()
    ctx.run.write_manifest("load", metrics)
    return metrics


def _lateness(ctx: StageContext, store: Store) -> Lateness | None:
    """The run's late rows (``core.lateness``), measured against the table before the load writes it."""
    spec = WindowSpec.parse(ctx.settings.source.window)
    watermark = store.watermark() if ctx.kind == "incremental" else None
    rule = late_rule(ctx.kind, spec.clock, ctx.until, watermark, spec.arrival_field)
    if rule is None:
        return None
    found = measure(rule, ctx.run.parts("clean"), ctx.run.parts("raw"), lambda keys: stored_keys(store, keys))
    if found.late_rows:
        log.info("%d late rows (%s %s)", found.late_rows, found.measure, found.at)
    return found
