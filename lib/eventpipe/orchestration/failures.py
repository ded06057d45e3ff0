"""Failures: what class a stage's failure belongs to, and the banner stamped on its saved notebook.

Classes: ``cell error`` (a cell raised), ``timeout`` (a cell ran past ``runner.cell_timeout_s``),
``dead kernel`` (killed, crashed or out of memory), ``runner error`` (papermill or the runner itself),
plus ``terminated`` and ``interrupted``, set by the runner and the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from papermill.exceptions import PapermillExecutionError

from ..audit.notebook_html import failure_banner

FAILURE_BANNER = "eventpipe-failure"


@dataclass(frozen=True)
class Failure:
    failure_class: str
    detail: str  # one line


def classify(exc: BaseException, cell_timeout_s: float) -> Failure:
    """The failure class and a one-line detail of an exception raised while a notebook ran."""
    if isinstance(exc, PapermillExecutionError):
        cls = "timeout" if exc.ename == "CellTimeoutError" else "cell error"
        detail = f"{exc.ename}: {exc.evalue}".strip()
    elif isinstance(exc, (CellTimeoutError, TimeoutError)):
        cls, detail = "timeout", f"a cell ran longer than runner.cell_timeout_s={cell_timeout_s}s"
    elif isinstance(exc, DeadKernelError):
        cls, detail = "dead kernel", "the notebook's kernel died (killed, crashed or out of memory)"
    else:
        cls, detail = "runner error", f"{type(exc).__name__}: {exc}"
    lines = detail.splitlines()
    return Failure(cls, lines[0] if lines else cls)


def stamp_failure(path: Path, stage: str, failure_class: str, detail: str) -> None:
    """Put a clear banner at the top of the saved notebook (papermill only marks cell errors itself).

    The detail may quote an API's answer or event data: it is escaped, so it renders as text.
    """
    if not path.exists():
        return
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception:  # a half-written notebook: leave it as it is
        return
    banner = nbformat.v4.new_markdown_cell(failure_banner(stage, failure_class, detail))
    banner.metadata["tags"] = [FAILURE_BANNER]
    nb.cells = [c for c in nb.cells if FAILURE_BANNER not in c.get("metadata", {}).get("tags", [])]
    nb.cells.insert(0, banner)
    nbformat.write(nb, str(path))
