"""Failure classes come from the exception's type (isinstance), and the banner renders its detail as text."""

from __future__ import annotations

import nbformat
import pytest
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from papermill.exceptions import PapermillExecutionError

from eventpipe.orchestration.failures import FAILURE_BANNER, classify, stamp_failure


def _cell_error(ename: str, evalue: str) -> PapermillExecutionError:
    return PapermillExecutionError(
        cell_index=3, exec_count=3, source="x", ename=ename, evalue=evalue, traceback=[]
    )


@pytest.mark.parametrize(
    "exc, cls",
    [
        (_cell_error("SourceError", "the API answered HTTP 404"), "cell error"),
        (_cell_error("CellTimeoutError", "cell timed out"), "timeout"),
        (CellTimeoutError("timed out"), "timeout"),
        (DeadKernelError("kernel died"), "dead kernel"),
        (RuntimeError("papermill could not start"), "runner error"),
    ],
)
def test_classes(exc, cls):
    assert classify(exc, 60).failure_class == cls


def test_a_look_alike_class_name_is_not_enough():
    class DeadKernelError(Exception):  # same name, another class: not nbclient's
        pass

    assert classify(DeadKernelError("x"), 60).failure_class == "runner error"


def test_the_detail_is_one_line():
    failure = classify(_cell_error("ValueError", "first line\nsecond line"), 60)
    assert failure.detail == "ValueError: first line"


def test_the_banner_escapes_markup(tmp_path):
    path = tmp_path / "01_extract.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("1")]
    nbformat.write(nb, str(path))
    stamp_failure(
        path, "extract", "cell error", 'SourceError: <script>alert(1)</script><img src=x onerror="x()">'
    )
    stamp_failure(path, "extract", "cell error", "again")  # a second stamp replaces the first
    cells = nbformat.read(str(path), as_version=4).cells
    banners = [c for c in cells if FAILURE_BANNER in c.metadata.get("tags", [])]
    assert len(banners) == 1 and cells[0] is banners[0] and "again" in banners[0].source
    stamp_failure(path, "extract", "cell error", '<script>alert(1)</script><img src=x onerror="x()">')
    source = nbformat.read(str(path), as_version=4).cells[0].source
    assert "<script>" not in source and "<img" not in source and "&lt;script&gt;" in source
