"""One function per notebook: what ``01_extract``, ``02_transform_quality`` and ``03_load`` do.

Each stage reads and writes only ``runs/<run_id>/`` (Parquet parts plus a small JSON manifest, see
``rundir``), so a notebook can be rerun on its own, and the notebooks stay a parameters cell, a call
here, and a few cells that show the result (``views``).
"""

from __future__ import annotations

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
from ..core.counts import RunCounts
from ..core.process import Rules, process, transform_workers
from ..core.quality import gate
from ..demo import server as demo
from ..errors import CountsMismatch, SettingsError
from ..jsonio import gc_paused
from ..logs import redact_console
from ..logs import setup_logging as _setup_logging
from ..rundir import RunDir, check_run_id
from ..settings import Settings, iso, load_settings, parse_window, redact, resolve_path, shown
from ..settings_file import RunSettings
from ..source.client import SourceClient
from ..source.config import SourceConfig
from ..source.extract import extract_window
from ..storage.loaders import loader_for
from ..storage.store import Store

__all__ = ["StageContext", "TransformSummary", "extract", "load", "setup_logging", "transform_quality"]

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
        run_id: Any,
        run_dir: str = "",
        params_file: str = "",
        overrides: list[str] | tuple[str, ...] = (),
        kind: str = "manual",
        replay: bool = False,
        advance_watermark: bool = False,
        settings_file: str = "",
    ) -> StageContext:
        """The context a notebook's parameters describe. With ``settings_file`` (the runner sets it), the run's
        resolved settings file is the whole description and the other parameters are not used."""
        if settings_file:
            return cls.from_settings_file(settings_file)
        settings = load_settings(params_file or None, list(overrides or ()))
        redact_console(lambda text: redact(text, settings))
        try:
            s, u = parse_window(since, until)
        except ValueError as e:
            raise SettingsError(f"window: {e}") from None
        rid = check_run_id(str(run_id))  # papermill -p guesses types: an id like 123 must stay text
        run = RunDir(run_folder(settings, rid, run_dir))
        return cls(settings, rid, s, u, run, kind, replay, advance_watermark)

    @classmethod
    def from_settings_file(cls, path: str | Path) -> StageContext:
        """The context of a run the runner resolved: its settings file (``RunDir.settings_file``) and this
        kernel's environment, which holds the secrets; the run's folder is the one the file is in."""
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
    """Fetch every page of the window into ``raw/part-*.parquet``; return the stage metrics."""
    with source_client(ctx.settings) as client, gc_paused():
        log.info("extracting [%s, %s) from %s", iso(ctx.since), iso(ctx.until), client.url)
        res = extract_window(
            client,
            ctx.since,
            ctx.until,
            ctx.run.fresh("raw"),
            ctx.settings.load.batch_size,
            on_page=ctx.run.progress_writer(),
        )
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


# -- 02 transform + quality ---------------------------------------------------------------------


@dataclass(frozen=True)
class TransformSummary:
    """What the transform notebook shows: its metrics, the reject reasons, clean events per hour."""

    metrics: dict[str, Any]
    reasons: Counter
    per_hour: pd.Series


def transform_quality(
    ctx: StageContext, now: datetime | None = None, replay: bool = False
) -> TransformSummary:
    """The record and quality rules over the run's raw parts (``core.process``), then the pass-rate gate.

    Raises ``QualityGateFailed`` (after writing the manifest) when the pass rate is too low.
    """
    q = ctx.settings.quality
    rules = Rules.of(ctx.settings, now or clock.now(), None if replay else (ctx.since, ctx.until))
    workers = transform_workers(ctx.settings.runner.transform_workers, len(ctx.run.parts("raw")))
    result = process(ctx.run, rules, replay=replay, workers=workers)
    c = result.counts
    metrics = {
        "stage": "transform_quality",
        **c.as_dict(),
        "pass_rate": round(result.pass_rate, 6),
        "min_pass_rate": q.min_pass_rate,
        "reasons": dict(result.reasons.most_common()),
        "seconds": round(result.seconds, 3),
        "workers": result.workers,
        "gate": "passed" if result.pass_rate >= q.min_pass_rate else "failed",
    }
    # clean events per hour, for the run page's chart (drawn when the report is built, not here)
    metrics["per_hour"] = {iso(t.to_pydatetime()): int(n) for t, n in result.per_hour.items()}
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
    gate(result.pass_rate, q, result.reasons)
    return TransformSummary(metrics, result.reasons, result.per_hour)


# -- 03 load ------------------------------------------------------------------------------------


def load(ctx: StageContext, advance_watermark: bool = False, replay: bool = False) -> dict[str, Any]:
    """Upsert the clean rows and dead letters, finish the run record, move the watermark: one transaction."""
    tq = ctx.read_manifest("transform_quality")
    extracted = ctx.read_manifest("extract")["extracted"] if not replay else tq["extracted"]
    if extracted != tq["extracted"]:
        raise CountsMismatch(f"extract wrote {extracted} records but transform read {tq['extracted']}")
    counts = RunCounts.from_mapping(tq)
    counts.check()
    store = Store(ctx.settings)
    store.create_schema()
    replayed = json.loads(ctx.run.replayed.read_text()) if replay else []
    run_values = {
        **counts.as_dict(),
        "pass_rate": tq["pass_rate"],
        "kind": ctx.kind,
        "window_since": ctx.since,
        "window_until": ctx.until,
    }
    try:
        loaded, seconds = loader_for(store).load(
            [str(p) for p in ctx.run.parts("clean")],
            [str(p) for p in ctx.run.parts("rejects")],
            ctx.run_id,
            run_values=run_values,
            watermark=("incremental", ctx.until) if advance_watermark else None,
            replayed_hashes=replayed,
            expected_rows=tq["passed"],
        )
    finally:
        store.dispose()
    counts = counts.with_load(loaded)
    counts.check()
    metrics = {
        "stage": "load",
        **counts.as_dict(),
        "pass_rate": tq["pass_rate"],
        "seconds": round(seconds, 3),
        "database": store.masked_url,
        "watermark": iso(ctx.until) if advance_watermark else None,
    }
    ctx.run.write_manifest("load", metrics)
    return metrics
