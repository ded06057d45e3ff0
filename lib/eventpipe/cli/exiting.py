"""How the command-line process ends: at once, once everything it wrote is out.

A run leaves the interpreter holding papermill, nbconvert, pandas, pyarrow, SQLAlchemy and the objects a
run made with them; Python's own teardown of all that (every module cleared, every object freed one by
one) took 0.35-0.6 s after the last line was printed, on every command. Nothing in it is work the command
still owes: the kernel is shut down, the files are closed, the database's transactions are committed or
rolled back. So, when no other thread is left, ``exit_now`` runs the ``atexit`` handlers (logging's flush
and close among them), flushes stdout and stderr, and ends the process with ``os._exit``. With another
thread still alive, it exits the ordinary way, so Python joins that thread.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def exit_now(code: int | None) -> NoReturn:
    """End the process with ``code`` (None: 0), skipping the interpreter's teardown when it is safe."""
    status = 0 if code is None else code
    if threading.active_count() > 1:  # a thread may still have work to finish: Python joins it
        sys.exit(status)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (``| head``) or a closed stream: nothing more to say
            pass
    os._exit(status)


def run() -> NoReturn:
    """The ``run_pipeline.py`` and ``eventpipe`` entry point: ``main()``, then ``exit_now``."""
    from .main import main

    exit_now(main())
