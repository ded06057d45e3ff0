"""The run ledger: which code and parameters produced a run's reports, and whether they changed since.

Each entry records the code version (git commit and dirty flag, or the package
version outside git), the SHA-256 of each source notebook, of each saved report and
of the resolved parameters, the parameters themselves (never a secret), user and host.
It goes into ``metrics.json`` and the run's ``pipeline_runs`` row; ``verify``
recomputes the report hashes and names each report edited or deleted since.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..settings import PROJECT_ROOT, Settings
from ..settings_file import public_parameters

REPORT_SUFFIXES = (".ipynb", ".html")
DERIVED_PAGES = {"run.html"}  # the run page is rebuilt from metrics.json whenever the index is


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_json(data: Any) -> str:
    return hashlib.sha256(
        json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()


@lru_cache(maxsize=4)
def code_version(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """``{"git_commit", "dirty"}`` in a git checkout, else ``{"package_version"}`` (looked up once per process)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return {"git_commit": commit, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return {"package_version": version("eventpipe")}
        except PackageNotFoundError:
            return {"package_version": "unknown"}


def code_label(code: Mapping[str, Any] | None) -> str:
    """Short form for tables: ``6381454`` / ``6381454+dirty`` / ``0.1.0``."""
    if not code:
        return "-"
    if code.get("git_commit"):
        return code["git_commit"][:7] + ("+dirty" if code.get("dirty") else "")
    return str(code.get("package_version", "-"))


def notebook_hashes(notebooks: Iterable[Path]) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in notebooks if p.is_file()}


def report_hashes(report_dir: Path) -> dict[str, str]:
    """SHA-256 of each saved report (executed notebooks and their HTML) in a run's folder."""
    return {
        p.name: sha256_file(p)
        for p in sorted(report_dir.iterdir())
        if p.is_file() and p.suffix in REPORT_SUFFIXES and p.name not in DERIVED_PAGES
    }


def ledger_entry(
    settings: Settings, notebooks: Iterable[Path], report_dir: Path, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``params``: the run's own resolved parameters (its record's), when the run is not ``settings``' own."""
    params = public_parameters(settings) if params is None else params
    return {
        "code": code_version(),
        "notebooks_sha256": notebook_hashes(notebooks),
        "reports_sha256": report_hashes(report_dir),
        "params": params,
        "params_sha256": sha256_json(params),
        "user": _user(),
        "host": socket.gethostname(),
    }


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


@dataclass(frozen=True)
class Finding:
    run_id: str
    report: str
    problem: str  # edited / deleted / unrecorded / no ledger
    level: str = "CHANGED"  # UNKNOWN: nothing to check it against (not a failure)

    def __str__(self) -> str:
        if self.report == "-":  # the run itself, not one of its files
            return f"{self.run_id}: {self.problem}"
        return f"{self.run_id}: {self.report} {self.problem}"


def verify_run(run_id: str, report_dir: Path, recorded: Mapping[str, str] | None) -> list[Finding]:
    """Compare a run's saved reports with the hashes recorded when it finished."""
    if recorded is None:
        return [
            Finding(run_id, "-", "has no ledger entry (run before the ledger, or never finished)", "UNKNOWN")
        ]
    findings = []
    current = report_hashes(report_dir) if report_dir.is_dir() else {}
    for name, digest in sorted(recorded.items()):
        if name not in current:
            findings.append(Finding(run_id, name, "deleted"))
        elif current[name] != digest:
            findings.append(Finding(run_id, name, "edited (SHA-256 differs from the ledger)"))
    for name in sorted(set(current) - set(recorded)):
        findings.append(Finding(run_id, name, "added after the run (not in the ledger)"))
    return findings
