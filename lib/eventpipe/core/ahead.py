"""Transform ahead: raw parts prepared by a worker process while the extract is still fetching.

The extract keeps one core busy (fetching and writing raw parts); the transform's worker processes
cost ~1 s each to start (pandas, pyarrow). So as soon as the extract has written three parts, it starts
the transform's pool and hands it each finished part, as many as the pool has workers plus one queued:
the workers start and prepare parts on the core the extract leaves idle. The transform stage then
takes the pool and the prepared parts over (``take``), when it runs in the same process (one kernel for
the run's notebooks, ``runner.shared_kernel``) for the same run, with the same rules.

Nothing changes in the result: ``prepare`` is the transform's own function, and a part prepared ahead
is used only if the transform would have written the same files. The one rule that reads the clock,
``quality.max_future``, is checked: a part is prepared again when a record's time lies between the two
"now"s' limits, or when a record was refused as too far ahead and the minute its reason names is not
the transform's (``Prepared.future_min``). Everything else a part's result depends on (the raw part,
the settings, the window) is the same by construction: the extract has finished writing a part before
it is handed over, and ``take`` compares the rules.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pandas as pd

from ..rundir import part_name
from .counts import RunCounts
from .process import Prepared, Rules, prepare, spawn_pool, transform_workers

log = logging.getLogger(__name__)

FOLDER = "ahead"  # in the run folder: ahead/clean and ahead/rejects, moved into place by the transform, and
# ahead/kept (each part's result, read back by its merge)


class Ahead:
    """The transform's pool, started by the extract of one run, and the parts handed to it so far."""

    def __init__(self, run_path: Path, rules: Rules, workers: int) -> None:
        self.run_path = run_path
        self.rules = rules
        self.workers = workers
        self.pool = spawn_pool(workers)
        self.folder = run_path / FOLDER
        for kind in ("clean", "rejects", "kept"):
            (self.folder / kind).mkdir(parents=True, exist_ok=True)
        self.futures: dict[int, Future[Path]] = {}  # part -> its ``prepare_kept`` file
        self.backlog: list[tuple[int, Path]] = []
        self.used = 0  # parts prepared ahead whose files the transform took
        self.redone = 0  # parts prepared ahead that the transform prepared again (``still_valid``)

    def part_written(self, index: int, raw_path: Path) -> None:
        """The extract finished writing part ``index``."""
        self.backlog.append((index, raw_path))
        self.top_up()

    def top_up(self) -> None:
        """Hand out waiting parts, first part first, while fewer than ``workers + 1`` are unfinished (more
        would leave the transform nothing to do beside the pool)."""
        while self.backlog and sum(not f.done() for f in self.futures.values()) < self.workers + 1:
            index, raw = self.backlog.pop(0)
            name = part_name(index)
            self.futures[index] = self.pool.submit(
                prepare_kept,
                self.folder / "kept" / f"{index}.npz",
                index,
                raw,
                self.folder / "clean" / name,
                self.folder / "rejects" / name,
                self.rules,
                False,
            )

    def accept(self, kept: Path, rules: Rules, clean_dir: Path, rejects_dir: Path) -> Prepared | None:
        """A part prepared ahead (``prepare_kept``'s file, read and removed), its files moved into the
        transform's folders; None when the transform, with its own "now", would not write the same files
        (see ``still_valid``)."""
        p = read_kept(kept)
        kept.unlink()
        if not still_valid(p, self.rules, rules):
            log.debug("part %d prepared ahead is prepared again: a record's time is near max_future", p.index)
            self.redone += 1
            return None
        self.used += 1
        clean = clean_dir / p.clean_path.name
        rejects = rejects_dir / p.reject_path.name
        os.replace(p.clean_path, clean)
        if p.reject_path.exists():
            os.replace(p.reject_path, rejects)
        return dataclasses.replace(p, clean_path=clean, reject_path=rejects)

    def close(self) -> None:
        """Stop: the pool's queued parts are dropped, its workers end, the folder goes."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.folder, ignore_errors=True)


_ARRAYS = ("keys", "passed", "reject_row", "hours")


def prepare_kept(kept: Path, *job: object) -> Path:
    """``prepare(*job)`` in a worker, its result kept in the file ``kept`` rather than sent back: what the
    merge needs of a part (its keys, rows and reasons: ~30 bytes a record) would otherwise wait in the
    calling process from the extract to the end of the transform (which merges the first parts last), for
    every part prepared ahead (~50 MB at 5M events). The arrays go as NumPy's ``.npz``, the rest as JSON:
    nothing in the run folder is unpickled."""
    p = prepare(*job)  # type: ignore[arg-type]
    rest = {f.name: getattr(p, f.name) for f in dataclasses.fields(p) if f.name not in _ARRAYS}
    rest.update(
        clean_path=str(p.clean_path), reject_path=str(p.reject_path), counts=dataclasses.asdict(p.counts)
    )
    with open(kept, "wb") as f:
        np.savez(
            f,
            **{name: getattr(p, name) for name in _ARRAYS},
            rest=np.frombuffer(json.dumps(rest).encode(), np.uint8),
        )
    return kept


def read_kept(kept: Path) -> Prepared:
    """The ``Prepared`` that ``prepare_kept`` kept in ``kept``."""
    with np.load(kept, allow_pickle=False) as z:
        arrays = {name: z[name] for name in _ARRAYS}
        rest = json.loads(z["rest"].tobytes())
    rest.update(
        clean_path=Path(rest["clean_path"]),
        reject_path=Path(rest["reject_path"]),
        counts=RunCounts(**rest["counts"]),
    )
    return Prepared(**arrays, **rest)


_current: Ahead | None = None


def start(run_path: Path, rules: Rules, requested_workers: int) -> Ahead | None:
    """The pool for this run's transform, started now (None when the transform would use no worker
    process: ``runner.transform_workers`` is 1, or this machine has one CPU). A previous run's that was
    never taken over is closed first."""
    global _current
    discard()
    workers = transform_workers(requested_workers, sys.maxsize)
    if workers < 1:
        return None
    _current = Ahead(run_path, rules, workers)
    log.debug("transform ahead: %d worker process(es) started for %s", workers, run_path)
    return _current


def discard() -> None:
    """Close the pool started ahead, if any (the extract failed, or another run is starting)."""
    global _current
    if _current is not None:
        ahead, _current = _current, None
        ahead.close()


def take(run_path: Path, rules: Rules, replay: bool) -> Ahead | None:
    """The pool and parts the extract of this run started, when they fit this transform (same run, same
    rules but for "now", not a replay); otherwise None, and whatever was started is closed."""
    global _current
    ahead, _current = _current, None
    if ahead is None:
        return None
    fits = (
        not replay
        and ahead.run_path == run_path
        and dataclasses.replace(ahead.rules, now=rules.now) == rules
        and rules.now >= ahead.rules.now
    )
    if not fits:
        ahead.close()
        return None
    ahead.backlog.clear()  # parts never handed out are the transform's to schedule
    return ahead


def still_valid(p: Prepared, ahead_rules: Rules, rules: Rules) -> bool:
    """Whether the transform, with its own "now", would write the files ``p`` holds: no record's time lies
    in ``(ahead limit, limit]`` (``max_future`` after each "now"), and any record refused as too far ahead
    names the same minute in its reason."""
    if p.future_min is None:
        return True
    limit = pd.Timestamp(rules.now + rules.quality.max_future)
    same_minute = f"{ahead_rules.now:%Y-%m-%dT%H:%M}" == f"{rules.now:%Y-%m-%dT%H:%M}"
    return same_minute and p.future_min > limit.value
