"""Progress on a terminal: rich bars for backfill partitions and for extract pages; nothing otherwise.

Off a terminal (cron, CI, a pipe) the runner's plain log lines already say what happens, so these
return ``None`` and the callers go on without a bar.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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


@contextmanager
def extract_bar(progress_file: Path, enabled: bool | None = None, every_s: float = 0.2) -> Iterator[None]:
    """While the block runs, show the extract stage's pages and records from ``progress_file``."""
    if not _shown(enabled):
        yield
        return
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    stop = threading.Event()
    text = TextColumn("extract: {task.fields[pages]} pages, {task.fields[records]} records")
    with _progress(SpinnerColumn(), text, TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task("extract", total=None, pages=0, records=0)

        def poll() -> None:
            while not stop.wait(every_s):
                try:
                    p = json.loads(progress_file.read_text())
                except (OSError, ValueError):
                    continue
                bar.update(task, pages=p["pages"], records=f"{p['records']:,}")
                if p.get("done"):
                    bar.update(task, visible=False)

        thread = threading.Thread(target=poll, name="extract-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=2)
