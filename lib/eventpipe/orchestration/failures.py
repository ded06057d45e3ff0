"""Failures: what class a stage's failure belongs to, and the banner stamped on its saved notebook.

Classes: ``cell error`` (a cell raised), ``timeout`` (a cell ran past ``runner.cell_timeout_s``),
``dead kernel`` (killed, crashed or out of memory), ``runner error`` (papermill or the runner itself),
plus ``terminated`` and ``interrupted``, set by the runner and the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from papermill.exceptions import PapermillExecutionError

from ..audit.notebook_html import PAPERMILL_ERROR_TAG, STOPPED_TAG, failure_banner, stop_message
from ..errors import clean_error_line

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


def _scrub(value: Any, redactor: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redactor(value)
    if isinstance(value, list):
        return [_scrub(v, redactor) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v, redactor) for k, v in value.items()}
    return value


def stamp_failure(
    path: Path, stage: str, failure_class: str, detail: str, redactor: Callable[[str], str] | None = None
) -> None:
    """Put a clear banner at the top of the saved notebook (papermill only marks cell errors itself).

    The detail may quote an API's answer or event data: it is escaped, so it renders as text. With
    ``redactor``, the detail and every cell output (papermill's error cell quotes the exception) pass
    through it first, so no secret is saved in the report.
    """
    if redactor is not None:
        detail = redactor(detail)
    if not path.exists():
        return
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception:  # a half-written notebook: leave it as it is
        return
    banner = nbformat.v4.new_markdown_cell(failure_banner(stage, failure_class, detail))
    banner.metadata["tags"] = [FAILURE_BANNER]
    if redactor is not None:
        for cell in nb.cells:
            if "outputs" in cell:
                cell["outputs"] = [nbformat.from_dict(_scrub(o, redactor)) for o in cell["outputs"]]
    nb.cells = [c for c in nb.cells if FAILURE_BANNER not in c.get("metadata", {}).get("tags", [])]
    mark_stop(nb)
    nb.cells.insert(0, banner)
    nbformat.write(nb, str(path))


def mark_stop(nb: Any) -> None:
    """Tag the cell the stage stopped in. A failure the pipeline raised on purpose (a ``PipelineError``: its
    traceback is its one line, see ``errors.PipelineError._render_traceback_``) becomes a message there, and
    papermill's "An Exception was encountered at 'In [n]'" cells go; a bug keeps its traceback."""
    for cell in nb.cells:
        for i, out in enumerate(cell.get("outputs", [])):
            if out.get("output_type") != "error":
                continue
            tags = cell.setdefault("metadata", {}).setdefault("tags", [])
            if STOPPED_TAG not in tags:
                tags.append(STOPPED_TAG)
            ename, evalue = out.get("ename", ""), out.get("evalue", "")
            if list(out.get("traceback") or []) == [clean_error_line(ename, evalue)]:
                cell.outputs[i] = nbformat.v4.new_output(
                    "display_data",
                    data={"text/markdown": stop_message(ename, evalue), "text/plain": f"{ename}: {evalue}"},
                    metadata={"eventpipe": {"ename": ename, "evalue": evalue}},
                )
                nb.cells = [
                    c for c in nb.cells if PAPERMILL_ERROR_TAG not in c.get("metadata", {}).get("tags", [])
                ]
            return
