"""The chunk loop: raw parts -> clean and reject parts, with cross-chunk dedup and the quality rules.

Chunks are processed from the last to the first, remembering the keys already seen, so "the last
one in API order wins" holds across chunk boundaries in one pass with bounded memory.
"""

from __future__ import annotations

import ctypes
import gc
import json
import multiprocessing
import os
import sys
import time
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from operator import not_
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..jsonio import dumps, gc_paused
from ..rundir import (
    CLEAN_SCHEMA,
    REJECT_SCHEMA,
    UNPARSED,
    UNPARSED_REASON,
    RunDir,
    part_name,
    read_raw_blocks,
    write_part,
)
from ..settings import QualitySettings, Settings
from ..testing.inject import checkpoint
from . import quality, records
from .counts import RunCounts
from .fields import FieldMap
from .records import KEY, TEXT_COLUMNS, KeySet, Parsed, duplicate_mask, key_hashes, parse_items, record_hash

if TYPE_CHECKING:
    from .ahead import Ahead


@dataclass(frozen=True)
class Rules:
    """What decides a record's fate: the quality settings, the instant "now" is, the field map, and the
    window ``[since, until)`` that a client-side filter keeps (None: the API's bounds are exact)."""

    quality: QualitySettings
    now: datetime
    fields: FieldMap = field(default_factory=lambda: FieldMap.parse({}))
    window: tuple[datetime, datetime] | None = None

    @classmethod
    def of(cls, settings: Settings, now: datetime, window: tuple[datetime, datetime] | None = None) -> Rules:
        """The rules the settings describe; ``window`` applies only where ``source.window.filter_field`` is set."""
        filtered = bool(settings.source.window.get("filter_field"))
        return cls(
            settings.quality, now, FieldMap.parse(settings.source.fields), window if filtered else None
        )


def raw_text(item: Any) -> str:
    """A record's text as the API sent it (an unparseable one keeps the text it came as)."""
    return item[UNPARSED] if type(item) is dict and UNPARSED in item else dumps(item)


@dataclass
class ProcessResult:
    counts: RunCounts
    pass_rate: float
    reasons: Counter = field(default_factory=Counter)
    per_hour: pd.Series = field(default_factory=lambda: pd.Series(dtype="int64"))
    seconds: float = 0.0
    settled_hashes: list[str] = field(
        default_factory=list
    )  # replay: dead letters that now pass or are superseded
    workers: int = 0  # worker processes that prepared parts (0: the calling process did all)
    ahead: int = 0  # parts prepared during the extract and used as they were (``core.ahead``)


@dataclass
class Prepared:
    """One raw part after everything but the dedup against later parts, its clean and reject files written.

    The rows that can still be superseded by a later part are the part's valid survivors (``keys``): for
    each, whether it passed (it is then a row of the clean file, in order) or where it sits in the reject
    file, so ``merge`` can take it back out.
    """

    index: int
    clean_path: Path
    reject_path: Path
    counts: RunCounts
    keys: np.ndarray  # key_hashes of the valid survivors, in part order
    passed: np.ndarray  # per valid survivor: it passed quality
    reject_row: np.ndarray  # per valid survivor: its row in the reject file (-1: it passed)
    hours: np.ndarray  # per valid survivor that passed: its event hour (datetime64[ns])
    bad_reasons: list[list[str]]  # every row of the reject file: its reasons
    settled: list[str]  # replay: record hashes of the part's settled rows (in-part duplicates, passes)
    key_raw_hashes: list[str]  # replay: per valid survivor, its record hash (else empty)
    future_min: int | None = (
        None  # the earliest record time past now + max_future (ns), if any (``core.ahead``)
    )


def parse_records(items: list[Any], seqs: np.ndarray | list[int], rules: Rules) -> pd.DataFrame:
    """The records after the field map, parsed, with the record rules' reasons (a record the source could
    not parse keeps the reason it came with)."""
    # the field map passes a record the source could not parse on as it is
    return parse_items(seqs, rules.fields.mapper()(items), _CARRIED)


_CARRIED = (UNPARSED, UNPARSED_REASON)
_GROUP = 4  # blocks decoded together: the quality rules (a pandera call each) run on ~4 x BLOCK rows at once


@dataclass
class _Part:
    """A raw part decoded ``_GROUP`` blocks of records at a time (whole pages), each block parsed alone
    (``records.BLOCK``). Of a group's decoded records only what a dead letter or a replay can need is kept
    before the next group is decoded: the raw text of each row that breaks a record rule or a quality rule
    (``raws``; a superseded duplicate or a record outside the window needs none) and, for a replay, the
    record hash of each row that passes the record rules (``hashes``). So one group of decoded records is
    held at a time (~0.7 MB a thousand records), not the part's. The quality rules, which judge each row
    alone, run on each group (``quality``)."""

    parsed: Parsed
    outside: np.ndarray
    quality: list[list[str]]  # per row: its quality reasons
    raws: dict[int, str]
    hashes: dict[int, str]


def _parse_part(raw_path: Path, rules: Rules, replay: bool) -> _Part:
    mapper = rules.fields.mapper()
    blocks: list[records.Block] = []
    seqs: list[int] = []
    outside: list[np.ndarray] = []
    checked: list[list[str]] = []
    raws: dict[int, str] = {}
    hashes: dict[int, str] = {}
    row = 0
    for items, page_seqs in read_raw_blocks(raw_path, _GROUP * records.BLOCK):
        seqs += page_seqs
        size = -(-len(items) // max(1, len(items) // records.BLOCK))  # ~BLOCK each: parsed in the cache
        group = [
            records.parse_block(mapper(items[a : a + size]), _CARRIED, True)
            for a in range(0, len(items), size)
        ]
        view = pd.concat([b.view() for b in group], ignore_index=True)
        out = outside_window(view, rules)
        q = quality.check(view, rules.quality, rules.now)
        broken = np.fromiter(
            map(bool, np.concatenate([b.reasons for b in group])), dtype=bool, count=len(items)
        )
        failed = np.fromiter(map(bool, q), dtype=bool, count=len(items))
        for j in np.flatnonzero((broken | failed) & ~out).tolist():
            raws[row + j] = raw_text(items[j])
        if replay:
            for j in np.flatnonzero(~broken & ~out).tolist():
                hashes[row + j] = record_hash(raw_text(items[j]))
        blocks += group
        outside.append(out)
        checked += q
        row += len(items)
        del items, group, view
    parsed = records.assemble(seqs, blocks)
    return _Part(
        parsed, np.concatenate(outside) if outside else np.zeros(0, dtype=bool), checked, raws, hashes
    )


def outside_window(df: pd.DataFrame, rules: Rules) -> np.ndarray:
    """Per record: the API's bounds are coarser than the window and its time lies outside ``[since, until)``.
    A record is outside when its time says so, whatever else is wrong with it; one without a usable time
    (missing, unparseable, before min_timestamp, too far ahead) stays a dead letter."""
    if rules.window is None:
        return np.zeros(len(df), dtype=bool)
    lo, hi = (pd.Timestamp(t) for t in rules.window)
    ts = df["timestamp"]
    sane = (ts >= pd.Timestamp(rules.quality.min_timestamp)) & (
        ts <= pd.Timestamp(rules.now + rules.quality.max_future)
    )
    return (sane & ((ts < lo) | (ts >= hi))).fillna(False).to_numpy(dtype=bool)


def fates(items: list[Any], rules: Rules) -> list[list[str] | None]:
    """What a run makes of each record, duplicates aside: None when it lies outside the window, ``[]`` when
    it loads, else the reasons it becomes a dead letter (``source check`` tallies them)."""
    df = parse_records(items, list(range(len(items))), rules)
    outside = outside_window(df, rules)
    checked = quality.check(df, rules.quality, rules.now)
    return [None if out else r + q for r, q, out in zip(df["reasons"], checked, outside)]


_DERIVED = ("event_date", "event_hour")
_PARSED = pa.schema([f for f in CLEAN_SCHEMA if f.name not in _DERIVED])
# pandas' notes on the derived columns, as ``from_pandas`` writes a column of dates and an Int16 one (read
# back, the clean file's frame has the same dtypes as when pandas derived them)
_DERIVED_PANDAS = [
    {"name": n, "field_name": n, "pandas_type": t, "numpy_type": d, "metadata": None}
    for n, t, d in (("event_date", "date", "object"), ("event_hour", "int16", "Int16"))
]


def clean_table(df: pd.DataFrame) -> pa.Table:
    """Passing rows -> the clean file's table, with the columns derived from the event time: ``event_date``
    (UTC date) and ``event_hour``. Arrow derives them from the timestamp column; pandas' ``dt.date`` made a
    Python date per row for Arrow to convert back (~0.02 CPU s per 100k rows)."""
    return _with_derived(pa.Table.from_pandas(df[_PARSED.names], schema=_PARSED, preserve_index=False))


def clean_table_of(
    df: pd.DataFrame, rows: np.ndarray, text: dict[str, pa.ChunkedArray], text_rows: np.ndarray
) -> pa.Table:
    """``clean_table(df.iloc[rows])`` with the text columns taken from their Arrow arrays (``Parsed.text``),
    where the same rows are ``text_rows``: the same table, schema and pandas notes."""
    notes = pa.Table.from_pandas(df.iloc[:0][_PARSED.names], schema=_PARSED, preserve_index=False).schema
    take = pa.array(text_rows, type=pa.int64())
    columns = {name: text[name].take(take) for name in TEXT_COLUMNS}
    columns["seq"] = pa.array(df["seq"].to_numpy()[rows], type=pa.int64())
    columns["timestamp"] = pa.Array.from_pandas(
        df["timestamp"].iloc[rows], type=_PARSED.field("timestamp").type
    )
    return _with_derived(pa.Table.from_arrays([columns[n] for n in _PARSED.names], schema=notes))


def _with_derived(table: pa.Table) -> pa.Table:
    ts = table["timestamp"]  # UTC: its local date and hour are the UTC ones
    table = table.append_column(CLEAN_SCHEMA.field("event_date"), pc.cast(ts, pa.date32()))
    table = table.append_column(CLEAN_SCHEMA.field("event_hour"), pc.cast(pc.hour(ts), pa.int16()))
    notes = json.loads(table.schema.metadata[b"pandas"])
    notes["columns"] += _DERIVED_PANDAS
    return table.replace_schema_metadata({b"pandas": json.dumps(notes).encode()})


def prepare(
    index: int, raw_path: Path, clean_path: Path, reject_path: Path, rules: Rules, replay: bool
) -> Prepared:
    """Parse one raw part, apply the record rules, the window, in-part dedup and quality; write its files."""
    c = RunCounts()
    settled: list[str] = []
    with gc_paused():  # millions of short-lived dicts would otherwise trigger full collections
        part = _parse_part(raw_path, rules, replay)
        df, text, outside = part.parsed.frame, part.parsed.text, part.outside
        c.extracted = len(df)
        later = df["timestamp"] > pd.Timestamp(rules.now + rules.quality.max_future)
        future_min = int(df["timestamp"][later].min().value) if later.any() else None
        ok = np.fromiter(map(not_, df["reasons"]), dtype=bool, count=len(df))
        ok &= ~outside
        c.outside_window = int(outside.sum())
        hashes = key_hashes(df.loc[ok, KEY])
        dup = np.zeros(len(df), dtype=bool)
        dup[np.flatnonzero(ok)] = duplicate_mask(hashes)
        c.rejected_transform = int((~ok & ~outside).sum())
        c.duplicates = int(dup.sum())
        if replay:  # a superseded duplicate is settled by the copy that wins
            settled += [part.hashes[j] for j in np.flatnonzero(dup).tolist()]
        keep = np.flatnonzero(~dup & ~outside)
        keys = hashes[~dup[np.flatnonzero(ok)]]
        df = df.iloc[keep]  # a new frame: renumbered in place (``reset_index`` would copy it again)
        df.index = pd.RangeIndex(len(df))
        ok = ok[keep]
        q_reasons = [part.quality[j] for j in keep]
        q_failed = np.fromiter(map(bool, q_reasons), dtype=bool, count=len(df))
        all_reasons = df["reasons"].tolist()
        for j in np.flatnonzero(q_failed):  # few: the rest keep their transform reasons as they are
            all_reasons[j] = all_reasons[j] + q_reasons[j]
        passed = ok & ~q_failed
        c.rejected_quality = int((ok & ~passed).sum())
        c.passed = int(passed.sum())
        bad = np.flatnonzero(~passed)
        raw_hashes = [part.hashes[j] for j in keep[ok].tolist()] if replay else []
        if replay:
            settled += [part.hashes[j] for j in keep[passed].tolist()]
        bad_raw = [part.raws[j] for j in keep[bad].tolist()]
        del part
        reject_row = np.full(len(df), -1, dtype=np.int64)
        reject_row[bad] = np.arange(len(bad))
        bad_reasons = [all_reasons[j] for j in bad]
        bad_seq = df["seq"].to_numpy()[bad]
        if text is None:  # a value Arrow could not take as text: the frame's own conversion says which
            table = clean_table(df[passed])
        else:
            clean_rows = np.flatnonzero(passed)
            table = clean_table_of(df, clean_rows, text, keep[clean_rows])
        hours = df["timestamp"][passed].dt.floor("h").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
        del df, text, all_reasons, q_reasons
        write_part(table, clean_path)
        del table
        if len(bad):
            rej = pd.DataFrame(
                {
                    "seq": bad_seq,
                    "stage": np.where(ok[bad], "quality", "transform"),
                    "reasons": bad_reasons,
                    "raw": bad_raw,
                }
            )
            write_part(pa.Table.from_pandas(rej, schema=REJECT_SCHEMA, preserve_index=False), reject_path)
            del rej, bad_raw
        out = Prepared(
            index,
            clean_path,
            reject_path,
            c,
            keys,
            passed[ok],
            reject_row[ok],
            hours,
            bad_reasons,
            settled,
            raw_hashes,
            future_min,
        )
        gc.collect(1)  # the part's frames leave a few reference cycles; free them now, not at the end
    release_free_memory()
    return out


def release_free_memory() -> None:
    """Hand the heap's free pages back to the system (glibc keeps a part's freed arenas otherwise, so
    each process's RSS stays at its largest part's high-water mark). Elsewhere a no-op."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def _find_malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


_malloc_trim = _find_malloc_trim()


def use_system_allocator() -> None:
    """Arrow's buffers from the C library's ``malloc`` instead of pyarrow's own allocator (mimalloc), where
    ``release_free_memory`` can hand them back: mimalloc keeps the pages of the parts' freed tables, so a
    kernel held ~100 MB it no longer used from its first part on (README, *Performance*). Only where
    ``malloc_trim`` exists (glibc), and never over a pool chosen with ``ARROW_DEFAULT_MEMORY_POOL``."""
    if _malloc_trim is not None and not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        pa.set_memory_pool(pa.system_memory_pool())


use_system_allocator()  # the kernel (through the stages) and each transform worker import this module


def _drop_rows(path: Path, rows: np.ndarray) -> None:
    """Rewrite a part without ``rows`` (superseded by a later part); an emptied reject file goes."""
    table = pq.read_table(path)
    keep = np.ones(table.num_rows, dtype=bool)
    keep[rows] = False
    if not keep.any() and path.parent.name == "rejects":
        path.unlink()
        return
    write_part(table.filter(pa.array(keep)), path)


class _Merge:
    """The parts' results, last part first: the dedup against later parts and the run's totals."""

    def __init__(self, replay: bool) -> None:
        self.c = RunCounts()
        self.reasons: Counter = Counter()
        self.per_hour: Counter = Counter()
        self.settled: list[str] = []
        self.seen = KeySet()  # the keys of later parts' rows
        self.replay = replay

    def add(self, p: Prepared) -> None:
        c, pc = self.c, p.counts
        superseded = self.seen.seen_before(p.keys)
        gone = np.flatnonzero(superseded)
        hours = p.hours
        part_reasons = p.bad_reasons
        if len(gone):
            gone_pass = gone[p.passed[gone]]
            gone_rej = gone[~p.passed[gone]]
            pc.duplicates += len(gone)
            pc.passed -= len(gone_pass)
            pc.rejected_quality -= len(gone_rej)
            if len(gone_pass):  # the clean file holds the passed survivors in order
                clean_rows = np.cumsum(p.passed)[gone_pass] - 1
                _drop_rows(p.clean_path, clean_rows)
                hours = np.delete(hours, clean_rows)
            if len(gone_rej):
                rows = p.reject_row[gone_rej]
                _drop_rows(p.reject_path, rows)
                dropped = set(rows.tolist())
                part_reasons = [r for k, r in enumerate(part_reasons) if k not in dropped]
            if self.replay:  # superseded: settled by the copy that wins
                self.settled += [p.key_raw_hashes[k] for k in gone_rej]
        for name in ("extracted", "rejected_transform", "duplicates", "outside_window", "passed"):
            setattr(c, name, getattr(c, name) + getattr(pc, name))
        c.rejected_quality += pc.rejected_quality
        self.reasons.update(quality.reason_counts(part_reasons))
        if len(hours):
            self.per_hour.update(pd.Series(hours).dt.tz_localize("UTC").value_counts().to_dict())
        self.settled += p.settled


def transform_workers(requested: int, parts: int) -> int:
    """Worker processes to spawn for ``runner.transform_workers = requested`` over ``parts`` raw parts.

    ``requested`` counts the processes that parse parts, this one included (0: one per CPU), so it
    spawns ``requested - 1`` workers, at most one per part after the first. 1 means this process alone, and
    so does a run of fewer than three parts (starting a worker costs more than it saves).
    """
    wanted = requested or os.cpu_count() or 1
    if wanted <= 1 or parts < 3:
        return 0
    return min(wanted - 1, parts - 1)


def spawn_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` spawned processes (forking a kernel that runs threads is not safe)."""
    main = sys.modules["__main__"]
    if not hasattr(main, "__spec__"):  # a Jupyter kernel's namespace: spawn reads it (None: none to re-run)
        main.__spec__ = None
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def process(
    run: RunDir,
    rules: Rules,
    replay: bool = False,
    workers: int = 0,
    ahead: Ahead | None = None,
    on_final: FinalFiles | None = None,
) -> ProcessResult:
    """Parse, normalise, dedup (last wins, across parts), check quality; write ``clean/`` and ``rejects/``.

    ``workers`` spawned processes (0: none) prepare parts beside this one, which prepares a part itself
    whenever the next to merge is not ready, and merges them last part first; the result is the same,
    file for file, whatever ``workers`` is. ``ahead`` (``core.ahead.take``): the pool the extract started
    and the parts it prepared, used instead of a new pool. ``on_final`` is given each clean file as soon as
    no later part can change it (once its part is merged: last part first), so its rows can be loaded
    while the transform goes on (``storage.early_load``); while it loads, this process leaves the parts
    to the workers and keeps its core for the load.
    """
    started = time.perf_counter()
    release_free_memory()  # what the extract freed, before a worker starts beside this process
    raw_parts = run.parts("raw")
    clean_dir = run.fresh("clean")
    rejects_dir = run.fresh("rejects")
    jobs = [
        (i, raw_parts[i], clean_dir / part_name(i), rejects_dir / part_name(i), rules, replay)
        for i in reversed(range(len(raw_parts)))
    ]
    merged = _Merge(replay)
    if ahead is not None:
        workers = ahead.workers
    if ahead is None and (workers < 1 or len(jobs) < 2):
        for job in jobs:
            prepared = prepare(*job)
            checkpoint("transform.chunk")
            merged.add(prepared)
            if on_final is not None:
                on_final.file_final(prepared.clean_path)
    else:
        pool = ahead.pool if ahead is not None else spawn_pool(workers)
        try:
            _merge_pooled(jobs, pool, workers, ahead, merged, rules, clean_dir, rejects_dir, on_final)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if ahead is not None:
                ahead.close()
    c = merged.c
    c.transformed = c.extracted - c.rejected_transform - c.duplicates - c.outside_window
    rate = quality.pass_rate(c.passed, c.extracted - c.duplicates - c.outside_window)
    per_hour = merged.per_hour
    hours = pd.Series(per_hour, dtype="int64").sort_index() if per_hour else pd.Series(dtype="int64")
    return ProcessResult(
        c,
        rate,
        merged.reasons,
        hours,
        time.perf_counter() - started,
        merged.settled,
        workers,
        ahead.used if ahead is not None else 0,
    )


class FinalFiles(Protocol):
    """Where ``process`` hands each final clean file (``storage.early_load.EarlyLoad``)."""

    stopped: str | None  # None while it loads the files handed to it

    def file_final(self, path: Path) -> None: ...


def _unready(r: Prepared | Future[Prepared] | Future[Path]) -> bool:
    return isinstance(r, Future) and not r.done()


def _merge_pooled(
    jobs: list[tuple[Any, ...]],
    pool: ProcessPoolExecutor,
    workers: int,
    ahead: Ahead | None,
    merged: _Merge,
    rules: Rules,
    clean_dir: Path,
    rejects_dir: Path,
    on_final: FinalFiles | None,
) -> None:
    """The parts prepared by ``pool`` (and the parts prepared ahead) and by this process, merged in the jobs'
    order. Each worker stays busy with one part queued; this process prepares the next part itself rather than
    wait for the one to merge."""
    ready: dict[int, Prepared | Future[Prepared] | Future[Path]] = {}  # by position in ``jobs``
    early = ahead.futures if ahead is not None else {}
    for k, job in enumerate(jobs):
        if job[0] in early:
            ready[k] = early[job[0]]
    todo = deque(k for k in range(len(jobs)) if k not in ready)  # positions not handed out yet

    def unfinished() -> int:
        return sum(map(_unready, ready.values()))

    def hand_out() -> None:  # keep each worker busy, and one part queued; not behind parts prepared ahead
        while todo and unfinished() < workers + 1 and not any(map(_unready, early.values())):
            k = todo.popleft()
            ready[k] = pool.submit(prepare, *jobs[k])

    def here() -> None:  # the next part not handed out, prepared in this process
        k = todo.popleft()
        ready[k] = prepare(*jobs[k])

    def loading() -> bool:  # the clean files are being loaded meanwhile: that takes this process's core
        return on_final is not None and on_final.stopped is None

    for k in range(len(jobs)):  # merge in this order: last part first
        hand_out()
        if k not in ready:  # the workers are busy with parts prepared ahead, which are merged last: this
            here()  # part is prepared here, sooner than queued behind them (the load waits for it)
        while _unready(ready[k]) and todo and not loading():
            here()  # rather than wait
            hand_out()
        got = ready.pop(k)
        result = got.result() if isinstance(got, Future) else got
        if isinstance(result, Path):  # prepared ahead: kept in a file (``ahead.prepare_kept``)
            assert ahead is not None
            early.pop(jobs[k][0])
            prepared = ahead.accept(result, rules, clean_dir, rejects_dir) or prepare(*jobs[k])
        else:
            prepared = result
        del got, result
        checkpoint("transform.chunk")
        merged.add(prepared)
        if on_final is not None:
            on_final.file_final(prepared.clean_path)
        release_free_memory()  # this process prepares no part while the load copies: trim after each merge
