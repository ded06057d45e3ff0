"""The notebook pages: an exporter made once per thread renders what a new one would, code shown or hidden."""

from __future__ import annotations

import threading

import nbformat

from eventpipe.audit import notebook_html


def _notebook(title: str) -> bytes:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(f"shown_only_with_code_{title}()")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"output of {title}\n")]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}"), cell]
    return nbformat.writes(nb).encode()


def _fresh(source: bytes, with_code: bool, title: str) -> str:
    notebook_html._exporters.__dict__.clear()  # this thread's exporters: made anew
    return notebook_html.render_notebook(source, with_code, title)


def test_a_reused_exporter_renders_what_a_new_one_renders():
    pages = [(_notebook(t), code, t) for t in ("a", "b") for code in (False, True, False)]
    want = [_fresh(*p) for p in pages]
    assert "shown_only_with_code_a" not in want[0] and "shown_only_with_code_a" in want[1]
    assert "output of a" in want[0] and "output of b" in want[3]
    notebook_html._exporters.__dict__.clear()
    assert [notebook_html.render_notebook(*p) for p in pages] == want  # one exporter per flag, reused
    got: list[str] = []
    other = threading.Thread(target=lambda: got.extend(notebook_html.render_notebook(*p) for p in pages))
    other.start()
    other.join()
    assert got == want
