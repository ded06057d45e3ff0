"""The papermill engine the runner uses (``orchestration.engine``): the executed notebook is written as it
starts and ends and at most every ``SAVE_EVERY`` seconds between, never more than that behind a running cell."""

from __future__ import annotations

import json
import threading
import time

import nbformat
import papermill as pm
import papermill.engines
import pytest

from eventpipe.orchestration import engine


def notebook(path, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def run(src, out, **kw):
    return pm.execute_notebook(
        str(src), str(out), kernel_name="python3", progress_bar=False, engine_name=engine.register(), **kw
    )


def test_few_writes_and_the_last_one_is_the_whole_notebook(tmp_path, monkeypatch):
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    notebook(src, [f"print({i})" for i in range(40)])
    writes = []
    original = papermill.engines.write_ipynb
    monkeypatch.setattr(
        papermill.engines, "write_ipynb", lambda nb, path: (writes.append(path), original(nb, path))
    )
    run(src, out)
    assert 2 <= len(writes) < 20, len(writes)  # papermill's own engine: 2 a cell and 2 more (82)
    saved = nbformat.read(out, as_version=4)
    texts = ["".join(o["text"] for o in c["outputs"]) for c in saved["cells"]]  # a print may come in 2 parts
    assert texts == [f"{i}\n" for i in range(40)]
    assert {c["metadata"]["papermill"]["status"] for c in saved["cells"]} == {"completed"}


@pytest.mark.parametrize("before", [0, 1.5], ids=["output-at-once", "output-after-the-first-write"])
def test_a_running_cell_reaches_the_file_within_the_interval(tmp_path, before):
    """What a run killed outright leaves: the notebook shows the long cell running, and its output so far,
    also when the output comes after the cell's start was written (a loaded machine, a slow first line)."""
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    cell = f"import time\ntime.sleep({before})\nprint('started', flush=True)\ntime.sleep(4)"
    notebook(src, ["x = 1", cell, "x"])
    t = threading.Thread(target=run, args=(src, out))
    t.start()
    try:
        seen = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                cells = json.loads(out.read_text())["cells"]
            except (FileNotFoundError, ValueError):
                cells = None
            if cells and cells[1]["metadata"]["papermill"]["status"] == "running" and cells[1]["outputs"]:
                seen = time.monotonic()
                break
            time.sleep(0.05)
        assert seen is not None, "the running cell never reached the file"
    finally:
        t.join(timeout=60)
    saved = nbformat.read(out, as_version=4)
    assert saved["cells"][2]["outputs"][0]["data"]["text/plain"] == "1"


def test_a_failing_cell_is_in_the_file(tmp_path):
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    notebook(src, ["1", "raise ValueError('boom')", "2"])
    try:
        run(src, out)
    except pm.PapermillExecutionError as e:
        assert "boom" in str(e)
    else:
        raise AssertionError("no error")
    saved = nbformat.read(out, as_version=4)
    assert saved["cells"][-1]["metadata"]["papermill"]["status"] != "completed"
    assert any(o.get("ename") == "ValueError" for c in saved["cells"] for o in c.get("outputs", []))


def test_a_deferred_write_that_fails_fails_the_execution(tmp_path, caplog):
    """Its folder deleted while a cell runs: the deferred write's error is raised by papermill's next save,
    as papermill's own engine would raise it, not logged from the event loop."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    src, out = tmp_path / "in.ipynb", out_dir / "out.ipynb"
    notebook(src, ["1", f"import shutil, time\nshutil.rmtree({str(out_dir)!r})\ntime.sleep(1.5)", "2"])
    try:
        run(src, out)
    except FileNotFoundError as e:
        assert "doesn't exist" in str(e)
    else:
        raise AssertionError("the execution went on without its notebook")
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text  # no traceback logged
