"""The ledger chain: each run's sealed entry (``reports/<run_id>/ledger.json``), linked to the entry before it.

A run's entry is sealed as the last step of its audit trail, when every file it writes is in its folder:
the SHA-256 of each of those files (``metrics.json``, ``run.log``, ``metrics.prom``, the executed
notebooks, anything else), the code version, the source notebooks' and the parameters' hashes, its place
in the chain (``seq``) and the hash of the entry sealed before it (``previous``). Entries are numbered in
the order they are sealed, under an flock on ``reports/.chain.lock``, so runs that finish at the same time
(backfill workers) still form one line; ``reports/chain.json`` names the newest; the database keeps a copy of
each entry. A deleted, reordered or rewritten run breaks the chain from that point on.

The pages derived from sealed files (``run.html`` from ``metrics.json``, each notebook's HTML from the
notebook) are rebuilt by ``report``: their hashes sit beside the entry (``derived_sha256``), outside its
hash, and are re-recorded by each rebuild.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .attest import ATTESTATION_FILE
from .files import write_json
from .ledger import sha256_file, sha256_json

log = logging.getLogger(__name__)

FORMAT = "eventpipe-ledger/1"
LEDGER_FILE = "ledger.json"
CHAIN_HEAD = "chain.json"
LOCK_FILE = ".chain.lock"
RUN_PAGE = "run.html"
UNSEALED = {LEDGER_FILE, ATTESTATION_FILE}  # each covers the others, and is checked on its own
OUTSIDE_HASH = ("entry_sha256", "derived_sha256")


def derived_from(name: str, names: set[str]) -> str | None:
    """The sealed file a page is rebuilt from (None: ``name`` is no derived page)."""
    if name == RUN_PAGE:
        return "metrics.json"
    notebook = name.removesuffix(".html") + ".ipynb"
    return notebook if name.endswith(".html") and notebook in names else None


def folder_hashes(report_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """SHA-256 of every file in a run's folder (paths relative to it): the sealed ones, the derived pages."""
    files = [p for p in sorted(report_dir.rglob("*")) if p.is_file() and not _in_flight(p)]
    names = {p.relative_to(report_dir).as_posix() for p in files}
    sealed: dict[str, str] = {}
    derived: dict[str, str] = {}
    for p in files:
        name = p.relative_to(report_dir).as_posix()
        if name not in UNSEALED:
            (derived if derived_from(name, names) else sealed)[name] = sha256_file(p)
    return sealed, derived


def _in_flight(path: Path) -> bool:
    """``.<name>.<pid>.tmp``: a page being written atomically by another process this very moment."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def entry_digest(entry: dict[str, Any]) -> str:
    """The hash of an entry's contents: its ``entry_sha256`` when untouched, the next entry's ``previous``."""
    return sha256_json({k: v for k, v in entry.items() if k not in OUTSIDE_HASH})


def sealed_part(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry without its derived pages' hashes: what the database keeps and the signature covers."""
    return {k: v for k, v in entry.items() if k != "derived_sha256"}


@contextmanager
def chain_lock(reports_dir: Path) -> Iterator[None]:
    """One sealer (or rebuilder) of this reports folder's chain at a time, across processes on this host."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(reports_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when it is missing or is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def seal(report_dir: Path, ledger: dict[str, Any], store: Any) -> dict[str, Any]:
    """Seal a finished run's folder: its entry after the newest one, in ``ledger.json``, ``chain.json`` and
    the database (a database that cannot be written is logged: the folder's copy stands)."""
    reports_dir = report_dir.parent
    with chain_lock(reports_dir):
        head = read_json(reports_dir / CHAIN_HEAD) or {}
        sealed, derived = folder_hashes(report_dir)
        entry: dict[str, Any] = {
            "format": FORMAT,
            "run_id": report_dir.name,
            "seq": int(head.get("seq") or 0) + 1,
            "previous": head.get("entry_sha256"),
            "sealed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "code": ledger["code"],
            "notebooks_sha256": ledger["notebooks_sha256"],
            "params_sha256": ledger["params_sha256"],
            "files_sha256": sealed,
        }
        entry["entry_sha256"] = entry_digest(entry)
        write_json(report_dir / LEDGER_FILE, {**entry, "derived_sha256": derived})
        try:
            write_json(
                reports_dir / CHAIN_HEAD,
                {"seq": entry["seq"], "run_id": entry["run_id"], "entry_sha256": entry["entry_sha256"]},
            )
        except OSError:  # a head not moved on: the entry is not in the chain, so the run stays unsealed
            (report_dir / LEDGER_FILE).unlink(missing_ok=True)
            raise
        try:
            store.record_seal(entry["run_id"], entry)
        except Exception as e:  # noqa: BLE001 - the folder's ledger.json and chain.json hold it
            log.warning("sealed ledger entry not stored in pipeline_runs: %s: %s", type(e).__name__, e)
    return entry


def record_derived(report_dir: Path) -> bool:
    """Re-record the hashes of a sealed run's derived pages after ``report`` rebuilt them (False: not sealed)."""
    with chain_lock(report_dir.parent):
        entry = read_json(report_dir / LEDGER_FILE)
        if entry is None:
            return False
        entry["derived_sha256"] = folder_hashes(report_dir)[1]
        write_json(report_dir / LEDGER_FILE, entry)
    return True
