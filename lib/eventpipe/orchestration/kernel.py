"""One Jupyter kernel for a run's notebooks, started early and warmed up while the runner gets ready.

papermill normally starts a kernel per notebook (~0.7 s each), and each new
kernel client waits ~0.2 s for the kernel's output channel to go quiet. Here a
run (or a whole inline backfill) gets one kernel:

* it is launched before the runner imports its heavy modules and checks the
  database, and imports the stages' modules at start-up (``exec_lines``), so on
  two cores the kernel's start and imports overlap the runner's own start;
* every notebook uses the same connected client, checked for readiness once;
* before each next notebook, ``%reset -f`` clears every variable, so a notebook
  cannot lean on another's state (imported modules stay loaded: the point); it
  is sent as a notebook ends, so the kernel clears while the runner goes on;
* a kernel that died is replaced; after a failed stage the kernel is thrown
  away (it may still be busy with a timed-out cell) and the next run starts a
  fresh one.

The manager is jupyter_client's ``AsyncKernelManager``, the kind nbclient uses
itself, so dead kernels and timeouts are reported exactly as with papermill's
own kernel.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync

from ..audit.attest import ENV_KEY, ENV_KEY_FILE
from ..settings import Settings, mask_url

log = logging.getLogger(__name__)

# imported by the kernel as it starts; names are deleted again, so the namespace stays empty. The garbage
# collector is off while they import (its collections over the imports' ~280k new objects took ~0.11 s of
# the kernel's ~1.1 s start here, 2026-12-05). Then every object so far (the modules' own) is moved out of
# its sight (``gc.freeze``) and it is on again: each full collection, such as those of every ``%reset``
# between two notebooks, then looks only at what the notebooks made (over the 150k objects of these
# imports, a full collection took 0.065 s). Frozen with them are the few cycles the imports left
# unreachable (~6,700 objects, ~1 MB by their own sizes, once per kernel). Two lines, each run by itself:
# the second (the collector on again) runs even if an import failed.
WARM_UP = (
    "__import__('gc').disable(); "
    "import pandas as _w0, pyarrow.parquet as _w1, scrapbook as _w2, eventpipe.notebook.stages as _w3, "
    "eventpipe.notebook.views as _w4; del _w0, _w1, _w2, _w3, _w4",
    "__import__('gc').freeze(); __import__('gc').enable()",
)

# The kernel application's own start-up log goes to the runner's stderr, racing the runner's one-line
# errors; it holds nothing a run needs (the kernel listens on Unix sockets in a folder private to the user,
# or on 127.0.0.1, and the connection file holds the HMAC key). Cell output and errors are not affected.
QUIET = "--IPKernelApp.log_level=ERROR"

RESET = "get_ipython().run_line_magic('reset', '-f')"
KILL_POLL_S = 0.005  # how often a killed kernel is looked for (``KeptKernelManager._async_wait``)


PROJECT_KERNEL = "eventpipe"
PROJECT_KERNEL_DISPLAY = "eventpipe (Python 3)"


def install_project_kernel() -> None:
    """The ``eventpipe`` kernelspec in this environment (``make`` installs it; a plain pip install gets it
    the first time a run needs it): this interpreter, named for the project in JupyterLab's launcher."""
    import sys

    from ipykernel.kernelspec import install

    install(kernel_name=PROJECT_KERNEL, display_name=PROJECT_KERNEL_DISPLAY, prefix=sys.prefix)
    log.info("installed the %r Jupyter kernel in %s", PROJECT_KERNEL, sys.prefix)


def check_kernel_name(name: str) -> None:
    """A ``runner.kernel_name`` that names no installed Jupyter kernel is a settings mistake: one line."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    from ..errors import SettingsError

    ksm = KernelSpecManager()
    if name == PROJECT_KERNEL and name not in ksm.find_kernel_specs():
        install_project_kernel()
        ksm = KernelSpecManager()
    try:
        ksm.get_kernel_spec(name)
    except NoSuchKernel:
        installed = ", ".join(sorted(ksm.find_kernel_specs())) or "none"
        raise SettingsError(
            f"runner.kernel_name: no Jupyter kernel named {name!r} (installed: {installed}); "
            f"set -p runner.kernel_name=<one of them>, or install it with "
            f"`python -m ipykernel install --user --name {name}`"
        ) from None


def kernel_env(settings: Settings) -> dict[str, str]:
    """The environment a notebook kernel starts with: this process's, plus the secrets the settings resolved.

    This is the only way a secret reaches a kernel (the run's settings file holds none), and it leaves this
    process's own ``os.environ`` as it is. The run-signing key stays out: only the runner signs.
    """
    env = {k: v for k, v in os.environ.items() if k not in (ENV_KEY, ENV_KEY_FILE)}
    if mask_url(settings.api.base_url) != settings.api.base_url:  # a password in its query: the file masks it
        env["API_BASE_URL"] = settings.api.base_url
    if settings.api_key:
        env["API_KEY"] = settings.api_key.reveal()
        env.pop("API_KEY_FILE", None)  # handed over by value: the kernel would find both set
    return env


class KeptClient(AsyncKernelClient):
    """A kernel client that stays connected across notebooks: readiness is awaited once."""

    _ready = False

    async def wait_for_ready(self, timeout: float | None = None) -> None:  # type: ignore[override]
        if not self._ready:
            await AsyncKernelClient._async_wait_for_ready(self, timeout)
            self._ready = True

    def start_channels(self, *args: Any, **kwargs: Any) -> None:
        if not self.channels_running:
            super().start_channels(*args, **kwargs)


class KeptKernelManager(AsyncKernelManager):
    """Hands nbclient (and the reset) the same ``KeptClient`` every time."""

    _kept: KeptClient | None = None

    def client(self, **kwargs: Any) -> KeptClient:  # type: ignore[override]
        if self._kept is None:
            kw = {
                **self.get_connection_info(session=True),
                "connection_file": self.connection_file,
                "parent": self,
                **kwargs,
            }
            self._kept = KeptClient(**kw)
        return self._kept

    def drop_client(self) -> None:
        if self._kept is not None:
            self._kept.stop_channels()
            self._kept = None

    async def _async_wait(self, pollinterval: float = 0.1) -> None:
        """jupyter_client looks every 0.1 s whether a kernel it killed is gone: it is gone within a few ms, so
        every run (and every discarded kernel) waited the whole 0.1 s for nothing."""
        await super()._async_wait(pollinterval=min(pollinterval, KILL_POLL_S))


_SOCKET_PATH_MAX = 100  # a Unix socket's path is at most 107 bytes on Linux (104 on macOS); "-5" is added


def _socket_folder() -> Path | None:
    """A folder only this user can enter, for the kernel's Unix sockets, with a path short enough for them
    (the Jupyter runtime folder under a deep $HOME is not); None when there is none."""
    folder = Path(tempfile.gettempdir()) / f"eventpipe-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(folder)
    except OSError:
        return None
    private = stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077
    if not private or len(str(folder)) + 20 > _SOCKET_PATH_MAX:  # another user's, a symlink, or too deep
        return None
    return folder


class SharedKernel:
    """The kernel for the notebooks of one or more runs (see the module's docstring)."""

    def __init__(self, kernel_name: str, cwd: Path, env: Mapping[str, str], warm_up: bool = True):
        self.kernel_name = kernel_name
        self.cwd = cwd
        self.env = dict(env)
        self.warm_up = warm_up
        self.km = self._manager()
        self.used = False
        self.cleared = False  # the reset was sent as the last notebook ended (``notebook_ended``)

    @classmethod
    def for_settings(cls, settings: Settings) -> SharedKernel:
        """The kernel ``runner.kernel_name`` names, in the notebooks' folder, with ``kernel_env``."""
        return cls(settings.runner.kernel_name, settings.path("notebooks_dir"), kernel_env(settings))

    def _manager(self) -> KeptKernelManager:
        # Unix sockets under a name of its own, not loopback TCP ports: jupyter_client picks a "free" TCP port
        # by binding and releasing it, so two runs starting kernels at the same moment could both pick it
        # (ZMQError: Address already in use, then "Kernel didn't respond in 60 seconds")
        folder = _socket_folder()
        if folder is None:  # no private folder with a short enough path: TCP on loopback, as papermill does
            return KeptKernelManager(kernel_name=self.kernel_name)
        km = KeptKernelManager(kernel_name=self.kernel_name, transport="ipc")
        km.ip = str(folder / f"k-{secrets.token_hex(6)}")
        return km

    def start(self) -> SharedKernel:
        """Launch the kernel process now (returns at once; the kernel boots and imports in parallel)."""
        if not self.km.has_kernel:
            check_kernel_name(self.kernel_name)
            extra = [
                QUIET,
                *([f"--IPKernelApp.exec_lines={line}" for line in WARM_UP] if self.warm_up else []),
            ]
            run_sync(self.km.start_kernel)(cwd=str(self.cwd), env=self.env, extra_arguments=extra)
            log.debug("kernel started (pid %s)", getattr(self.km.provisioner, "pid", None))
        return self

    def for_next_notebook(self) -> dict[str, Any]:
        """papermill keyword arguments for the next notebook: the shared manager, the kernel reset."""
        if self.km.has_kernel and not run_sync(self.km.is_alive)():
            self.shutdown()  # it died with the previous notebook: the next one gets a fresh kernel
            self.km = self._manager()
        if not self.km.has_kernel:
            self.start()
        elif self.used and not self.cleared:
            run_sync(self._reset)()
        self.used = True
        self.cleared = False
        return {"km": self.km}

    def notebook_ended(self) -> None:
        """A notebook ran to its end: its variables are cleared now (``%reset -f``: two full garbage collections,
        ~0.1 s), while the runner reads its results and papermill reads the next notebook. The request is only
        sent: the kernel runs requests in order, so the next notebook's first one waits behind it, and nbclient
        passes over replies to requests not its own. A request that cannot be sent leaves the reset to
        ``for_next_notebook``, as before."""
        if not self.km.has_kernel or self.km._kept is None:
            return
        try:
            self.km._kept.execute(RESET, store_history=False)
        except Exception as e:  # noqa: BLE001 - the next notebook resets it the usual way
            log.debug("reset not sent ahead: %s: %s", type(e).__name__, e)
            return
        self.cleared = True

    async def _reset(self) -> None:
        kc = self.km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=60)
        await kc.execute_interactive(RESET, timeout=60, store_history=False)

    @property
    def pid(self) -> int | None:
        """The kernel's process id (it leads a process group of its own); None before it starts."""
        if not self.km.has_kernel:
            return None
        return getattr(self.km.provisioner, "pid", None)

    def discard(self) -> None:
        """Throw the kernel away (after a failed stage); the next notebook starts a fresh one."""
        self.shutdown()
        self.km = self._manager()
        self.used = False
        self.cleared = False

    def shutdown(self) -> None:
        self.km.drop_client()
        if self.km.has_kernel:
            try:
                run_sync(self.km.shutdown_kernel)(now=True)
            except Exception:  # already gone
                log.debug("kernel already gone at shutdown")
