"""One function per notebook: what ``01_extract``, ``02_transform_quality`` and ``03_load`` do.

Each stage reads and writes only ``runs/<run_id>/`` (Parquet parts plus a small
JSON manifest), so a notebook can be rerun on its own, and the notebooks
stay a parameters cell, a call here, and a few cells that show the result.
"""

from __future__ import annotations

import gc
import html
import json
import logging
import shutil
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import quality
from .demo_api import DEMO_KEY, DemoServer, demo_data
from .counts import COUNT_KEYS, check_counts
from .errors import CountsMismatch, SettingsError
from .inject import checkpoint
from .load import Loader, LoadResult, record_hash
from .settings import Secret, Settings, iso, load_settings, parse_instant, resolve_path
from .source import SourceClient, extract_window, read_raw_part
from .store import Store
from .jsonio import dumps, loads
from .transform import KeySet, duplicate_mask, enrich, key_hashes, parse_items

log = logging.getLogger(__name__)

CLEAN_SCHEMA = pa.schema([
    ("seq", pa.int64()), ("user_id", pa.string()), ("event_type", pa.string()),
    ("timestamp", pa.timestamp("us", tz="UTC")), ("properties", pa.string()), ("session_id", pa.string()),
    ("event_date", pa.date32()), ("event_hour", pa.int16()),
])
REJECT_SCHEMA = pa.schema([
    ("seq", pa.int64()), ("stage", pa.string()), ("reasons", pa.list_(pa.string())), ("raw", pa.string()),
])


def setup_logging(level: int = logging.INFO) -> None:
    """Log lines to stderr: in a notebook they become part of the saved report, and the runner streams them."""
    root = logging.getLogger("eventpipe")
    if not any(getattr(h, "_eventpipe", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        handler._eventpipe = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


@dataclass
class StageContext:
    """What every stage needs: settings, the window, the run id and its working folder."""

    settings: Settings
    run_id: str
    since: datetime
    until: datetime
    run_dir: Path
    kind: str = "manual"

    @classmethod
    def from_parameters(cls, since: str, until: str, run_id: Any, run_dir: str = "", params_file: str = "",
                        overrides: list[str] | tuple[str, ...] = (), kind: str = "manual") -> "StageContext":
        settings = load_settings(params_file or None, list(overrides or ()))
        try:
            s, u = parse_instant(since), parse_instant(until)
        except ValueError as e:
            raise SettingsError(f"window: {e}") from None
        if u <= s:
            raise SettingsError(f"window: until {iso(u)} must be after since {iso(s)}")
        rid = str(run_id)  # papermill -p guesses types: an id like 123 must stay text
        path = resolve_path(run_dir) if run_dir else settings.path("runs_dir") / rid
        path.mkdir(parents=True, exist_ok=True)
        return cls(settings, rid, s, u, path, kind)

    def manifest(self, stage: str) -> Path:
        return self.run_dir / f"{stage}.json"

    def read_manifest(self, stage: str) -> dict[str, Any]:
        path = self.manifest(stage)
        if not path.is_file():
            raise SettingsError(f"{path} is missing: run the {stage} notebook for run {self.run_id} first")
        return json.loads(path.read_text())

    def write_manifest(self, stage: str, data: dict[str, Any]) -> None:
        tmp = self.manifest(stage).with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str))
        tmp.replace(self.manifest(stage))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the automatic cyclic garbage collector: parsed JSON holds no cycles, and refcounting frees it
    (a chunk-by-chunk caller collects the young generations itself after each chunk)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


# -- 01 extract ---------------------------------------------------------------------------------

@contextmanager
def source_client(settings: Settings) -> Iterator[SourceClient]:
    """A client for the configured API; without one, a demo API served from this process."""
    if settings.api.base_url:
        yield SourceClient(settings.api.base_url, settings.api_key, settings.api)
        return
    with DemoServer(demo_data(settings.demo), api_key=DEMO_KEY) as server:
        log.info("no API_BASE_URL set: serving the bundled demo API at %s for this session", server.url)
        yield SourceClient(server.url, Secret(DEMO_KEY), settings.api)


def extract(ctx: StageContext) -> dict[str, Any]:
    """Fetch every page of the window into ``raw/part-*.parquet``; return the stage metrics."""
    with source_client(ctx.settings) as client, gc_paused():
        log.info("extracting [%s, %s) from %s", iso(ctx.since), iso(ctx.until), client.url)
        res = extract_window(client, ctx.since, ctx.until, _fresh_dir(ctx.run_dir / "raw"),
                             ctx.settings.load.batch_size)
    metrics = {"stage": "extract", "extracted": res.records, "since": res.since, "until": res.until,
               "seconds": round(res.seconds, 3), "parts": len(res.parts), **res.stats}
    ctx.write_manifest("extract", metrics)
    return metrics


def _head(parts: list[Path], n: int) -> Iterator[pa.RecordBatch]:
    """The first rows of a run's Parquet parts, in order, reading no more batches than asked for."""
    for part in parts:
        yield from pq.ParquetFile(part).iter_batches(batch_size=n)


def raw_sample(ctx: StageContext, n: int = 8) -> pd.DataFrame:
    """The first raw items of the window, exactly as the API sent them (only the first pages are read)."""
    seqs: list[int] = []
    raws: list[str] = []
    field = ctx.settings.api.items_field
    for batch in _head(sorted((ctx.run_dir / "raw").glob("part-*.parquet")), 1):
        for first, body in zip(batch["first_seq"].to_pylist(), batch["body"].to_pylist()):
            items = loads(body)[field][: n - len(raws)]
            seqs += range(first, first + len(items))
            raws += [dumps(x) for x in items]
        if len(raws) >= n:
            break
    return pd.DataFrame({"seq": seqs, "raw": raws})


# -- 02 transform + quality ---------------------------------------------------------------------

@dataclass
class TransformSummary:
    metrics: dict[str, Any]
    reasons: Counter = field(default_factory=Counter)
    per_hour: pd.Series = field(default_factory=lambda: pd.Series(dtype="int64"))


def transform_quality(ctx: StageContext, now: datetime | None = None, replay: bool = False) -> TransformSummary:
    """Parse, normalise, dedup (last wins, across chunks), check quality; write clean and reject parts.

    Chunks are processed from the last to the first, remembering the keys already
    seen, so "the last one in API order wins" holds across chunk boundaries in one
    pass with bounded memory. Raises ``QualityGateFailed`` (after writing the
    summary) when the pass rate is too low.
    """
    started = time.perf_counter()
    now = now or datetime.now(timezone.utc)
    q = ctx.settings.quality
    raw_parts = sorted((ctx.run_dir / "raw").glob("part-*.parquet"))
    clean_dir = _fresh_dir(ctx.run_dir / "clean")
    rejects_dir = _fresh_dir(ctx.run_dir / "rejects")

    counts: Counter = Counter()
    reasons: Counter = Counter()
    per_hour: Counter = Counter()
    passed_hashes: list[str] = []
    seen = KeySet()  # the keys of later chunks' rows
    with gc_paused():  # millions of short-lived dicts would otherwise trigger full collections
        for i in reversed(range(len(raw_parts))):
            items, seqs = read_raw_part(raw_parts[i], ctx.settings.api.items_field)
            df = parse_items(seqs, items)
            checkpoint("transform.chunk")
            counts["extracted"] += len(df)
            ok = np.fromiter((not r for r in df["reasons"]), dtype=bool, count=len(df))
            hashes = key_hashes(df[ok])
            superseded = duplicate_mask(hashes) | seen.seen_before(hashes)
            dup = np.zeros(len(df), dtype=bool)
            dup[np.flatnonzero(ok)] = superseded
            counts["rejected_transform"] += int((~ok).sum())
            counts["duplicates"] += int(dup.sum())
            if replay:  # a superseded duplicate is settled by the copy that wins
                passed_hashes += [record_hash(dumps(items[j])) for j in np.flatnonzero(dup)]
            keep = np.flatnonzero(~dup)
            df = df.iloc[keep].reset_index(drop=True)
            ok = ok[keep]
            q_reasons = quality.check(df, q, now)
            all_reasons = [r + qr if qr else r for r, qr in zip(df["reasons"], q_reasons)]
            passed = np.fromiter((not r for r in all_reasons), dtype=bool, count=len(df))
            counts["rejected_quality"] += int((ok & ~passed).sum())
            counts["passed"] += int(passed.sum())
            bad = np.flatnonzero(~passed)
            reasons.update(quality.reason_counts(all_reasons[j] for j in bad))

            clean = enrich(df[passed])
            pq.write_table(pa.Table.from_pandas(clean[CLEAN_SCHEMA.names], schema=CLEAN_SCHEMA, preserve_index=False),
                           clean_dir / f"part-{i:05d}.parquet")
            per_hour.update(clean["timestamp"].dt.floor("h").value_counts().to_dict())
            if replay:
                passed_hashes += [record_hash(dumps(items[keep[j]])) for j in np.flatnonzero(passed)]
            if len(bad):
                rej = pd.DataFrame({
                    "seq": df["seq"].to_numpy()[bad],
                    "stage": np.where(ok[bad], "quality", "transform"),
                    "reasons": [all_reasons[j] for j in bad],
                    "raw": [dumps(items[keep[j]]) for j in bad],
                })
                pq.write_table(pa.Table.from_pandas(rej, schema=REJECT_SCHEMA, preserve_index=False),
                               rejects_dir / f"part-{i:05d}.parquet")
            del items, df, clean
            gc.collect(1)  # the chunk's frames leave a few reference cycles; free them now, not at the end

    extracted = counts["extracted"]
    distinct = extracted - counts["duplicates"]
    rate = quality.pass_rate(counts["passed"], distinct)
    metrics = {
        "stage": "transform_quality", "extracted": extracted,
        "rejected_transform": counts["rejected_transform"], "duplicates": counts["duplicates"],
        "transformed": extracted - counts["rejected_transform"] - counts["duplicates"],
        "passed": counts["passed"], "rejected_quality": counts["rejected_quality"],
        "pass_rate": round(rate, 6), "min_pass_rate": q.min_pass_rate,
        "reasons": dict(reasons.most_common()), "seconds": round(time.perf_counter() - started, 3),
        "gate": "passed" if rate >= q.min_pass_rate else "failed",
    }
    ctx.write_manifest("transform_quality", metrics)
    if replay:
        (ctx.run_dir / "replayed.json").write_text(json.dumps(passed_hashes))
    hours = pd.Series(per_hour, dtype="int64").sort_index() if per_hour else pd.Series(dtype="int64")
    log.info("transformed %d of %d records: %d passed, %d rejected (transform %d, quality %d), %d duplicates; "
             "pass rate %.2f%%", metrics["transformed"], extracted, counts["passed"],
             counts["rejected_transform"] + counts["rejected_quality"], counts["rejected_transform"],
             counts["rejected_quality"], counts["duplicates"], rate * 100)
    summary = TransformSummary(metrics, reasons, hours)
    quality.gate(rate, q, reasons)
    return summary


@dataclass
class Bars:
    """A bar chart as a table: HTML bars in JupyterLab and the saved report, text bars in logs.

    Drawn without a plotting library, so no run pays for importing one.
    """

    counts: pd.Series  # label -> count, in display order
    label: str
    value: str = "clean events"
    width: int = 40  # text bars: characters for the largest count

    @property
    def _top(self) -> int:
        return max(int(self.counts.max()), 1) if len(self.counts) else 1

    def _repr_html_(self) -> str:
        rows = "".join(
            f'<tr><td style="text-align:left">{html.escape(str(k))}</td><td>{int(v):,}</td>'
            f'<td style="width:24em;text-align:left"><div style="background:#5b8def;height:0.8em;'
            f'width:{100 * int(v) / self._top:.1f}%"></div></td></tr>'
            for k, v in self.counts.items())
        return (f"<table><thead><tr><th>{html.escape(self.label)}</th><th>{html.escape(self.value)}</th><th></th>"
                f"</tr></thead><tbody>{rows}</tbody></table>")

    def __repr__(self) -> str:
        lines = [f"{self.label:<16} {self.value:>12}"]
        lines += [f"{str(k):<16} {int(v):>12,} {'█' * round(self.width * int(v) / self._top)}"
                  for k, v in self.counts.items()]
        return "\n".join(lines)


def per_hour_chart(per_hour: pd.Series, max_rows: int = 48) -> Bars:
    """Clean events per hour (per day beyond ``max_rows`` hours) as bars."""
    s = per_hour.sort_index()
    hourly = len(s) <= max_rows
    if not hourly:
        s = s.groupby(s.index.floor("D")).sum()
    s.index = s.index.strftime("%Y-%m-%d %H:%M" if hourly else "%Y-%m-%d")
    return Bars(s, "hour (UTC)" if hourly else "day (UTC)")


def _sample(parts: list[Path], n: int, columns: list[str]) -> pd.DataFrame:
    rows = 0
    batches = []
    for batch in _head(parts, n):
        batches.append(batch.slice(0, n - rows))
        rows += batches[-1].num_rows
        if rows >= n:
            break
    return pa.Table.from_batches(batches).to_pandas() if rows else pd.DataFrame(columns=columns)


def clean_sample(ctx: StageContext, n: int = 10) -> pd.DataFrame:
    return _sample(sorted((ctx.run_dir / "clean").glob("part-*.parquet")), n, CLEAN_SCHEMA.names)


def reject_sample(ctx: StageContext, n: int = 10) -> pd.DataFrame:
    return _sample(sorted((ctx.run_dir / "rejects").glob("part-*.parquet")), n, REJECT_SCHEMA.names)


def table_summary(ctx: StageContext) -> pd.DataFrame:
    """Row counts a reviewer checks after a load: the window in ``analytics`` and the dead letters."""
    from sqlalchemy import func, select

    store = Store(ctx.settings)
    t = store.t
    try:
        with store.reader.connect() as conn:
            in_window = conn.execute(select(func.count()).select_from(t.analytics).where(
                t.analytics.c.timestamp >= ctx.since, t.analytics.c.timestamp < ctx.until)).scalar()
            total = conn.execute(select(func.count()).select_from(t.analytics)).scalar()
            dl = dict(conn.execute(select(t.dead_letter.c.status, func.count()).group_by(t.dead_letter.c.status)).all())
            mark = conn.execute(select(t.state.c.watermark).where(t.state.c.name == "incremental")).scalar()
    finally:
        store.dispose()
    rows = {"analytics rows in this window": in_window, "analytics rows in total": total,
            **{f"dead letters {k}": v for k, v in sorted(dl.items())},
            "incremental watermark": str(mark) if mark else "(none yet)", "database": store.masked_url}
    return pd.Series(rows, name="value", dtype=object).to_frame()


# -- 03 load ------------------------------------------------------------------------------------

def load(ctx: StageContext, advance_watermark: bool = False, replay: bool = False) -> dict[str, Any]:
    """Upsert the clean rows and dead letters, finish the run record, move the watermark: one transaction."""
    tq = ctx.read_manifest("transform_quality")
    extracted = ctx.read_manifest("extract")["extracted"] if not replay else tq["extracted"]
    if extracted != tq["extracted"]:
        raise CountsMismatch(f"extract wrote {extracted} records but transform read {tq['extracted']}")
    check_counts(tq)
    store = Store(ctx.settings)
    store.create_schema()
    replayed = json.loads((ctx.run_dir / "replayed.json").read_text()) if replay else []
    run_values = {k: tq[k] for k in COUNT_KEYS} | {"pass_rate": tq["pass_rate"], "kind": ctx.kind,
                                                  "window_since": ctx.since, "window_until": ctx.until}
    try:
        result: LoadResult = Loader(store).load(
            sorted(str(p) for p in (ctx.run_dir / "clean").glob("part-*.parquet")),
            sorted(str(p) for p in (ctx.run_dir / "rejects").glob("part-*.parquet")),
            ctx.run_id, run_values=run_values,
            watermark=("incremental", ctx.until) if advance_watermark else None,
            replayed_hashes=replayed, expected_rows=tq["passed"])
    finally:
        store.dispose()
    metrics = {"stage": "load", **{k: tq[k] for k in COUNT_KEYS}, "pass_rate": tq["pass_rate"],
               **result.as_dict(), "database": store.masked_url,
               "watermark": iso(ctx.until) if advance_watermark else None}
    metrics["seconds"] = round(metrics["seconds"], 3)
    check_counts(metrics)
    ctx.write_manifest("load", metrics)
    return metrics
