"""HTML beside every executed notebook (nbconvert's lab template), readable without Jupyter.

Code cells are hidden by default (auditors read outputs); ``with_code`` keeps them.
The page loads nothing from the network and runs no script: the CDN script tags of
the lab template are dropped, and a Content-Security-Policy forbids every script, so
event data that slipped into an output as markup could not run even if it were live.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from jinja2 import PackageLoader

from .files import write_text
from .templating import render

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "base-uri 'none'; form-action 'none'"
)

# nbconvert/eventpipe.html.j2 extends its lab template (see the module docstring)
NBCONVERT_TEMPLATES = PackageLoader("eventpipe.audit", "templates/nbconvert")
FAILURE_CLASS = "eventpipe-failure"
STOP_CLASS = "eventpipe-stop"
STOPPED_TAG = "eventpipe-stopped-here"  # the cell a failed stage stopped in (``orchestration.failures``)
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"  # papermill's "An Exception was encountered at 'In [n]'"
SCRAP_MIME = "application/scrapbook.scrap."


def failure_banner(stage: str | None, failure_class: str, detail: str) -> str:
    """The markdown of the red banner put at the top of a failed stage's notebook.

    The detail can quote event data (an error about a record), so it is escaped: it
    renders as text in JupyterLab, in nbconvert's HTML and on the run pages.
    """
    return render(
        "failure_banner.md.j2",
        css_class=FAILURE_CLASS,
        stage=stage,
        failure_class=failure_class,
        lines=(detail or failure_class).splitlines(),
    )


def stop_message(ename: str, message: str) -> str:
    """The markdown shown in place of a traceback where a failure the pipeline raised on purpose stopped a
    stage (a quality gate, an API refusal, a bad setting); escaped like the banner."""
    return render(
        "stop_message.md.j2", css_class=STOP_CLASS, ename=ename, lines=message.splitlines() or [ename]
    )


def _until_stop(cells: list[Any], with_code: bool) -> list[Any]:
    """The cells an auditor reads: those up to the cell a failed stage stopped in, without the cells after it
    that never ran (bare headings) and, with code hidden, without papermill's "In [n]" markers."""
    out = []
    for cell in cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if not with_code and PAPERMILL_ERROR_TAG in tags:
            continue
        out.append(cell)
        if STOPPED_TAG in tags:
            break
    return out


def _without_scraps(cell: Any) -> Any:
    """scrapbook's glue outputs have no visible form (nbconvert warns about each one)."""
    if cell.get("cell_type") == "code":
        cell.outputs = [
            o
            for o in cell.get("outputs", [])
            if not all(k.startswith(SCRAP_MIME) for k in o.get("data", {"text/plain": 1}))
        ]
    return cell


def html_path(notebook: Path) -> Path:
    return notebook.with_suffix(".html")


def notebook_to_html(notebook: Path, with_code: bool = False, title: str | None = None) -> Path:
    """Write ``<notebook>.html`` beside ``notebook``; return its path."""
    return write_text(
        html_path(notebook), render_notebook(notebook.read_bytes(), with_code, title or notebook.stem)
    )


def render_notebook(source: bytes, with_code: bool, title: str) -> str:
    """The HTML page of the notebook file ``source`` holds, not written anywhere (see ``notebook_to_html``)."""
    import nbformat

    nb = nbformat.reads(source.decode(), as_version=4)
    exporter = _exporter(with_code)
    nb.cells = [_without_scraps(c) for c in _until_stop(nb.cells, with_code)]
    resources = {"eventpipe_csp": CSP, "metadata": {"name": title}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return body


_exporters = (
    threading.local()
)  # one exporter per thread (audit pages are rendered in a background thread too)


def _exporter(with_code: bool) -> Any:
    """The HTML exporter for code shown or hidden, made once per thread: a new one compiles nbconvert's
    templates again (about half the CPU time of rendering a stage's page)."""
    made = getattr(_exporters, "made", None)
    if made is None:
        made = _exporters.made = {}
    if with_code not in made:
        from nbconvert import HTMLExporter

        exporter = HTMLExporter(extra_loaders=[NBCONVERT_TEMPLATES], template_file="eventpipe.html.j2")
        exporter.exclude_input = not with_code
        exporter.exclude_input_prompt = not with_code
        exporter.exclude_output_prompt = True
        made[with_code] = exporter
    return made[with_code]
