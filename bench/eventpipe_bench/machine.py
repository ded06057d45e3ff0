"""The machine a result was measured on: cores, CPU, memory, Python, PostgreSQL, and which code (the git
commit, the uncommitted files, a hash of the code measured)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from .common import ROOT, say
from .pg import server_version
from .snapshot import Code, code_sha1


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
    except Exception:
        return None


def machine_info(db_url: str, code: Code) -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        mem = round(psutil.virtual_memory().total / 2**30, 1)
        load = [round(x, 2) for x in psutil.getloadavg()]
    except Exception:
        mem, load = None, None
    commit = (_git("rev-parse", "--short", "HEAD") or "").strip() or None
    # lib/ may carry uncommitted edits: name them, and fingerprint the code that was measured
    dirty = [
        line[3:]
        for line in (_git("status", "--porcelain", "--", "lib", "notebooks", "params") or "").splitlines()
    ]
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "mem_total_gb": mem,
        "loadavg_at_start": load,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": server_version(db_url),
        "git_commit": commit,
        "git_uncommitted": dirty,
        "code_sha1": code_sha1(code.root),
        "code_dir": "snapshot of the working tree" if code.root != ROOT else str(ROOT),
    }


def note_code_change(res: dict[str, Any], code: Code) -> None:
    """Flag the results when lib/, notebooks/ or params/ of the working tree changed while the benchmark ran."""
    now_sha1 = code_sha1(ROOT)
    if now_sha1 != res["machine"]["code_sha1"]:
        res["machine"]["code_changed_during_run"] = True
        measured = (
            "the snapshot taken at the start was measured"
            if code.root != ROOT
            else "figures may mix versions"
        )
        say(f"note: lib/, notebooks/ or params/ changed during the benchmark (now {now_sha1}); {measured}")
