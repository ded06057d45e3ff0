"""The analysts' path in a real JupyterLab: open 01, 02, 03 in order, Run All, and read what they show."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import ROOT

NOTEBOOKS = ("01_extract", "02_transform_quality", "03_load")
ALL_RUN = """() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return false;
  const idle = panel.querySelector(".jp-Notebook-ExecutionIndicator[data-status='idle']");
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent);
  return !!idle && prompts.length > 0 && /\\[\\d+\\]/.test(prompts[prompts.length - 1])
    && !prompts.some(p => p.includes('*'));
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``jupyter lab`` on a free loopback port with token auth, over a copy of the notebooks (its autosave
    must not write outputs into the committed ones), with its own Jupyter state and SQLite database."""
    from eventpipe.orchestration.kernel import PROJECT_KERNEL, check_kernel_name

    check_kernel_name(PROJECT_KERNEL)  # installs the project's kernelspec when this environment lacks it
    nb_dir = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", nb_dir)
    settings = tmp_path / "lab-settings"
    # every cell rendered (no windowing, so each output can be read), and no news prompt over the page
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        '{"windowingMode": "none"}'
    )
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false"}'
    )
    token, port = secrets.token_hex(16), _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'lab.sqlite'}",
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jr"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
    }
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={nb_dir}",
            "--ServerApp.port_retries=0",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"jupyter lab did not start: {(tmp_path / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.3)
    try:
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _run_all(page, base: str, token: str, name: str, shot: Path) -> None:
    if not page.url.startswith(base):
        page.goto(f"{base}/lab/tree/{name}.ipynb?token={token}")
    else:  # the next notebook: a double click in the file browser, as an analyst opens it
        page.locator(".jp-DirListing-item", has_text=f"{name}.ipynb").first.dblclick()
        page.wait_for_selector(f".jp-mod-current .lm-TabBar-tabLabel:text('{name}.ipynb')", timeout=30_000)
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook", timeout=90_000)
    page.wait_for_selector(
        ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status='idle']",
        timeout=90_000,
    )
    page.wait_for_timeout(1500)
    dialog = page.locator(".jp-Dialog")
    if dialog.count():  # "Select Kernel", offering the notebook's own: accept it, as an analyst would
        assert "eventpipe" in dialog.inner_text()
        dialog.locator(".jp-mod-accept").click()
        page.wait_for_selector(
            ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status='idle']",
            timeout=90_000,
        )
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    try:
        page.wait_for_function(ALL_RUN, timeout=120_000, polling=500)
    except Exception:
        page.screenshot(path=str(shot), full_page=True)
        raise


def test_analyst_opens_and_runs_each_notebook_in_order_in_jupyterlab(lab, page, tmp_path):
    base, token = lab
    for name in NOTEBOOKS:
        _run_all(page, base, token, name, tmp_path / f"lab-{name}-timeout.png")
        panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        kernel = panel.locator(".jp-KernelName").first.inner_text()
        assert "eventpipe" in kernel, kernel  # the project's kernel, not a generic "Python 3"
        stderr = panel.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
        assert stderr.count() == 0, stderr.all_inner_texts()  # no error, and INFO logs are not red boxes
        assert panel.locator(".jp-OutputArea-output table").count() >= 2  # its tables
        assert panel.locator('.jp-OutputArea-output[data-mime-type="image/svg+xml"]').count() >= 1  # chart
        text = panel.inner_text()
        assert "Traceback" not in text and "Error" not in text.replace("error_message", "")
        page.screenshot(path=str(tmp_path / f"lab-{name}.png"), full_page=True)
    load = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").inner_text()
    assert "all windows" in load and "not moved by this run" in load  # the analyst's run moves no watermark
