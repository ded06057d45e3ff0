"""The shared kernel: it listens on Unix sockets in a private, short folder (else loopback TCP), and its
environment adds the run's secrets to this process's."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from eventpipe.orchestration import kernel


def test_kernels_listen_on_unix_sockets_in_a_private_folder(tmp_path, monkeypatch):
    short = Path(
        tempfile.mkdtemp(prefix="ep-")
    )  # tmp_path may be too deep for a socket (pytest-xdist adds a level)
    try:
        monkeypatch.setattr(tempfile, "gettempdir", lambda: str(short))
        km = kernel.SharedKernel("python3", tmp_path, {})._manager()
        assert km.transport == "ipc" and km.ip.startswith(str(short / f"eventpipe-{os.getuid()}"))
        assert (short / f"eventpipe-{os.getuid()}").stat().st_mode & 0o777 == 0o700
    finally:
        shutil.rmtree(short)


def test_a_folder_others_can_enter_or_a_path_too_long_for_a_socket_means_tcp(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / f"eventpipe-{os.getuid()}").mkdir(mode=0o755)
    os.chmod(shared / f"eventpipe-{os.getuid()}", 0o755)  # made by someone else's umask, or planted
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(shared))
    assert kernel.SharedKernel("python3", tmp_path, {})._manager().transport == "tcp"
    deep = tmp_path / ("d" * 90)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(deep))
    km = kernel.SharedKernel("python3", tmp_path, {})._manager()
    assert km.transport == "tcp" and km.ip == "127.0.0.1"


def test_the_kernels_environment_adds_secrets_only(monkeypatch):
    from eventpipe.settings import load_settings

    monkeypatch.delenv("API_BASE_URL", raising=False)
    plain = load_settings(None, ["api.base_url=http://127.0.0.1:9"], env={"API_KEY": "k-123456"})
    env = kernel.kernel_env(plain)
    assert env["API_KEY"] == "k-123456" and "API_BASE_URL" not in env  # the run's settings file names the API
    with_password = load_settings(None, ["api.base_url=http://127.0.0.1:9/?password=pw-5678"], env={})
    assert kernel.kernel_env(with_password)["API_BASE_URL"] == "http://127.0.0.1:9/?password=pw-5678"


def _kernel_says(k: kernel.SharedKernel, code: str) -> str:
    """What ``code`` prints in the started kernel ``k``."""
    from jupyter_core.utils import run_sync

    kc = k.km.client()
    kc.start_channels()
    out: list[str] = []
    try:
        run_sync(kc.wait_for_ready)(timeout=60)

        def hook(msg: dict) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"].get("text", ""))

        run_sync(kc.execute_interactive)(code, timeout=60, output_hook=hook)
    finally:
        kc.stop_channels()
    return "".join(out).strip()


PROBE = (
    "import gc, sys; print(gc.isenabled(), gc.get_freeze_count() > 100_000, 'pandas' in sys.modules, "
    "'eventpipe.notebook.stages' in sys.modules, any(n.startswith('_w') for n in dir()))"
)


def test_after_the_warm_up_the_stages_are_imported_and_frozen_and_the_collector_is_on(tmp_path):
    k = kernel.SharedKernel(kernel.PROJECT_KERNEL, tmp_path, dict(os.environ)).start()
    try:
        assert _kernel_says(k, PROBE) == "True True True True False"
    finally:
        k.shutdown()


def test_a_warm_up_import_that_fails_leaves_the_collector_on(tmp_path, monkeypatch):
    failing = ("__import__('gc').disable(); import eventpipe_no_such_module", *kernel.WARM_UP[1:])
    monkeypatch.setattr(kernel, "WARM_UP", failing)
    k = kernel.SharedKernel(kernel.PROJECT_KERNEL, tmp_path, dict(os.environ)).start()
    try:
        assert _kernel_says(k, "import gc; print(gc.isenabled())") == "True"
    finally:
        k.shutdown()
