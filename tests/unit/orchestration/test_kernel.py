"""Where the shared kernel listens: Unix sockets in a private, short folder, else loopback TCP."""

from __future__ import annotations

import os
import tempfile

from eventpipe.orchestration import kernel


def test_kernels_listen_on_unix_sockets_in_a_private_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    km = kernel.SharedKernel("python3", tmp_path, {})._manager()
    assert km.transport == "ipc" and km.ip.startswith(str(tmp_path / f"eventpipe-{os.getuid()}"))
    assert (tmp_path / f"eventpipe-{os.getuid()}").stat().st_mode & 0o777 == 0o700


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
