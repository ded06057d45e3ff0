"""Progress: a run's stages as one line each, and a bar of backfill partitions.

A run's stages (``stage_lines``): on a terminal, one line per stage updated in place while it runs (extract
pages and records, transform parts, load rows) and left with what the stage did; off a terminal (cron
mail, an Airflow task log, a pipe) one plain line as each stage ends. The backfill bar shows on a terminal
only: off it, the backfill's own log lines say what happens.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..jsonio import loads
from ..rundir import RunDir
from ..words import counted


def on_terminal() -> bool:
    return sys.stderr.isatty()


def _shown(enabled: bool | None) -> bool:
    return on_terminal() if enabled is None else enabled


def _progress(*columns: Any, transient: bool) -> Any:
    """A rich progress display on stderr, so it never mixes with what the command prints on stdout."""
    from rich.console import Console
    from rich.progress import Progress

    return Progress(*columns, console=Console(stderr=True), transient=transient)


@contextmanager
def backfill_bar(total: int, enabled: bool | None = None) -> Iterator[Callable[[Any], None] | None]:
    """A bar of partitions (done, failed, remaining, ETA); yields the ``on_result`` callback, or None."""
    if not _shown(enabled):
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    counts = {"ok": 0, "failed": 0, "skipped": 0}
    columns = (
        TextColumn("partitions"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
    )
    with _progress(*columns, transient=False) as bar:
        task = bar.add_task("backfill", total=total, detail="")

        def on_result(result: Any) -> None:
            counts[result.result] = counts.get(result.result, 0) + 1
            bar.update(
                task,
                advance=1,
                detail=f"ok {counts['ok']} failed {counts['failed']} skipped {counts['skipped']}",
            )

        yield on_result


STAGE_LABELS = {"extract": "extract", "transform_quality": "transform", "load": "load"}


def stage_summary(stage: str, m: dict[str, Any], run_dir: Path | None = None) -> str:
    """What a finished stage did, in a few words (its metrics scrap)."""
    if stage == "extract":
        return f"{counted(m.get('pages', 0), 'page')}, {counted(m.get('extracted', 0), 'record')}"
    if stage == "transform_quality":
        parts = len(RunDir(run_dir).parts("clean")) if run_dir else 0
        head = f"{counted(parts, 'part')}: " if parts else ""
        rejected = m.get("rejected_transform", 0) + m.get("rejected_quality", 0)
        return (
            f"{head}{m.get('passed', 0):,} passed, {rejected:,} rejected, "
            f"{counted(m.get('duplicates', 0), 'duplicate')}"
        )
    if stage == "load":
        return (
            f"{counted(m.get('loaded', 0), 'row')}: {m.get('inserted', 0):,} inserted, "
            f"{m.get('updated', 0):,} updated, {m.get('unchanged', 0):,} unchanged"
        )
    return ""


def stage_line(stage: str, event: str, m: dict[str, Any], run_dir: Path | None = None) -> str:
    """``extract    206 pages, 20,524 records  2.0s``; a failed stage: ``load       failed after 1.2s``."""
    label = f"{STAGE_LABELS.get(stage, stage):<10} "
    seconds = m.get("seconds") or 0.0
    if event == "failed":
        return f"{label}failed after {seconds:.1f}s"
    return f"{label}{stage_summary(stage, m, run_dir)}  {seconds:.1f}s"


def _live_text(stage: str, run_dir: Path, known: dict[str, Any]) -> str:
    """What a running stage has done so far, read from its run folder."""
    if stage == "extract":
        try:
            p = loads(RunDir(run_dir).progress.read_bytes())
        except (OSError, ValueError):
            return "starting"
        return f"{counted(p['pages'], 'page')}, {counted(p['records'], 'record')}"
    if stage == "transform_quality":
        run = RunDir(run_dir)
        return f"part {len(run.parts('clean'))} of {len(run.parts('raw'))}"
    if stage == "load" and "passed" in known:
        return f"{counted(known['passed'], 'row')}"
    return "running"


@contextmanager
def stage_lines(
    terminal: bool | None = None,
    every_s: float = 0.2,
    out: Any = None,
    emit: Callable[[str], None] | None = None,
) -> Iterator[Callable[[str, str, dict[str, Any] | None, Path], None]]:
    """Yields the observer ``Runner.execute`` takes: a line per stage, live on a terminal, plain otherwise.
    The plain lines go to stderr (``out``), like the log, or to ``emit`` (a log call, for JSON log lines);
    the summary goes to stdout."""
    if not _shown(terminal) or emit is not None:

        def plain(stage: str, event: str, m: dict[str, Any] | None, run_dir: Path) -> None:
            if event == "started":
                return
            line = stage_line(stage, event, m or {}, run_dir)
            if emit is not None:
                emit(line)
            else:
                print(line, file=out or sys.stderr, flush=True)

        yield plain
        return
    from rich.progress import SpinnerColumn, TextColumn

    columns = (SpinnerColumn(finished_text=" "), TextColumn("{task.description}"))
    stop = threading.Event()
    lock = threading.Lock()
    running: dict[str, Any] = {}  # the stage under way: its task, run folder, start and what is known
    known: dict[str, Any] = {}
    with _progress(*columns, transient=False) as bar:

        def show() -> None:
            with lock:
                if not running:
                    return
                stage = running["stage"]
                text = _live_text(stage, running["run_dir"], known)
                took = time.monotonic() - running["t0"]
                label = f"{STAGE_LABELS.get(stage, stage):<10} "
                bar.update(running["task"], description=f"{label}{text}  {took:.1f}s")

        def observe(stage: str, event: str, m: dict[str, Any] | None, run_dir: Path) -> None:
            with lock:
                if event == "started":
                    task = bar.add_task(STAGE_LABELS.get(stage, stage), total=None)
                    running.update(stage=stage, task=task, run_dir=run_dir, t0=time.monotonic())
                    return
                if running.get("stage") == stage:
                    known.update(m or {})
                    line = stage_line(stage, event, m or {}, run_dir)
                    bar.update(running["task"], description=line, total=1, completed=1)
                    running.clear()
            show()

        def poll() -> None:
            while not stop.wait(every_s):
                show()

        thread = threading.Thread(target=poll, name="stage-progress", daemon=True)
        thread.start()
        try:
            yield observe
        finally:
            stop.set()
            thread.join(timeout=2)
