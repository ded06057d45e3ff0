"""The failure banner stamped on a saved notebook renders hostile text as text, and keeps no secret."""

from __future__ import annotations

import nbformat
from nbconvert import HTMLExporter

from eventpipe.orchestration.failures import FAILURE_BANNER, stamp_failure

HOSTILE = 'SourceError: 400 {"error": "<script>alert(1)</script><img src=x onerror=alert(2)>"}'


def saved_notebook(tmp_path, error_text: str = "ok"):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("raise SourceError(...)")
    cell.outputs = [
        nbformat.v4.new_output("error", ename="SourceError", evalue=error_text, traceback=[error_text])
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# 01 · Extract"), cell]
    path = tmp_path / "01_extract.ipynb"
    nbformat.write(nb, str(path))
    return path


def exported_html(path) -> str:
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(path), as_version=4))
    return body


def test_a_hostile_error_detail_is_no_live_html_in_the_exported_report(tmp_path):
    path = saved_notebook(tmp_path, HOSTILE)
    stamp_failure(path, "extract", "cell error", HOSTILE)
    nb = nbformat.read(str(path), as_version=4)
    assert FAILURE_BANNER in nb.cells[0].metadata["tags"]
    html = exported_html(path)
    assert "This run FAILED" in html
    assert "<script>alert" not in html and "<img src=x" not in html and "onerror=alert(2)>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown, as text


def test_a_hostile_failure_class_or_stage_is_escaped_too(tmp_path):
    path = saved_notebook(tmp_path)
    stamp_failure(path, "<img src=x onerror=alert(3)>", "<script>alert(4)</script>", "detail")
    html = exported_html(path)
    assert "<img src=x" not in html and "<script>alert(4)" not in html


def test_the_redactor_scrubs_the_banner_and_every_output(tmp_path):
    path = saved_notebook(tmp_path, "Bearer sk-SECRET-123 was refused")
    stamp_failure(
        path, "extract", "cell error", "Bearer sk-SECRET-123", lambda t: t.replace("sk-SECRET-123", "***")
    )
    text = path.read_text()
    assert "sk-SECRET-123" not in text and "Bearer ***" in text


def test_restamping_keeps_one_banner(tmp_path):
    path = saved_notebook(tmp_path)
    stamp_failure(path, "extract", "cell error", "first")
    stamp_failure(path, "extract", "timeout", "second")
    nb = nbformat.read(str(path), as_version=4)
    assert sum(FAILURE_BANNER in c.metadata.get("tags", []) for c in nb.cells) == 1
