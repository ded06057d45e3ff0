"""HTML beside every executed notebook (nbconvert's lab template), readable without Jupyter.

Code cells are hidden by default (auditors read outputs); ``with_code`` keeps them.
The page loads nothing from the network and runs no script: the CDN script tags of
the lab template are dropped, and a Content-Security-Policy forbids every script, so
event data that slipped into an output as markup could not run even if it were live.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from jinja2 import DictLoader

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "base-uri 'none'; form-action 'none'"
)

# extends nbconvert's lab template: no require.js, MathJax or Mermaid from a CDN, and a CSP meta tag
TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}<meta http-equiv="Content-Security-Policy" content="{{ resources.eventpipe_csp }}">{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


FAILURE_CLASS = "eventpipe-failure"
SCRAP_MIME = "application/scrapbook.scrap."


def failure_banner(stage: str | None, failure_class: str, detail: str) -> str:
    """The markdown of the red banner put at the top of a failed stage's notebook.

    The detail can quote event data (an error about a record), so it is escaped: it
    renders as text in JupyterLab, in nbconvert's HTML and on the run pages.
    """
    where = f" in stage <code>{html.escape(stage)}</code>" if stage else ""
    text = "<br>".join(html.escape(line) for line in (detail or failure_class).splitlines())
    return (
        f'<div class="{FAILURE_CLASS}" style="border:2px solid #b00020;background:#fdecee;color:#7a0012;'
        f'padding:0.6em 1em;font-size:1.1em">\n'
        f"<strong>This run FAILED{where}: {html.escape(failure_class)}.</strong><br>\n{text}\n</div>\n\n"
        "The cells below show how far the stage got; the run is marked `failed` and the watermark did not move."
    )


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
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    exporter = HTMLExporter(
        extra_loaders=[DictLoader({"eventpipe.html.j2": TEMPLATE})], template_file="eventpipe.html.j2"
    )
    exporter.exclude_input = not with_code
    exporter.exclude_input_prompt = not with_code
    exporter.exclude_output_prompt = True
    nb.cells = [_without_scraps(c) for c in nb.cells]
    resources = {"eventpipe_csp": CSP, "metadata": {"name": title or notebook.stem}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    out = html_path(notebook)
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(out)
    return out
