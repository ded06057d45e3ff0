"""``report verify``: every file of every run against its sealed ledger entry, the chain across runs, signatures.

The database's copy of an entry is the reference when the database can be reached: a folder whose run has no
row there is named (its own ``ledger.json`` cannot vouch for it), and so is a ``ledger.json`` that differs
from the row. Runs sealed before the chain existed are checked against the report hashes they recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..core.run_metrics import RunMetrics
from . import attest
from .chain import CHAIN_HEAD, LEDGER_FILE, derived_from, entry_digest, folder_hashes, read_json, sealed_part
from .ledger import Finding, verify_run

EDITED = "edited (SHA-256 differs from the ledger)"


@dataclass
class Verification:
    """What ``verify`` found, and how many runs it checked."""

    findings: list[Finding] = field(default_factory=list)
    checked: int = 0

    @property
    def changed(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "CHANGED"]


def verify(
    reports_dir: Path,
    rows: Mapping[str, Mapping[str, Any]] | None,
    run_id: str | None = None,
    public_keys: Iterable[Ed25519PublicKey] = (),
) -> Verification:
    """Check the runs under ``reports_dir`` (only ``run_id`` when given; then the chain is not walked).

    ``rows``: the database's ledger columns by run id (``Store.ledger_rows``); None when it cannot be reached.
    """
    keys = list(public_keys)
    folders = {p.name: p for p in _run_folders(reports_dir)}
    known = dict(rows or {})
    ids = sorted(set(folders) | {rid for rid, row in known.items() if _under(row, reports_dir)})
    if run_id is not None:
        ids = [rid for rid in ids if rid == run_id]
    out = Verification()
    entries: dict[str, dict[str, Any]] = {}
    for rid in ids:
        folder = folders.get(rid) or reports_dir / rid
        entry = _check_run(out.findings, rid, folder, known.get(rid), rows is not None)
        if entry is not None:
            entries[rid] = entry
            if keys and folder.is_dir():
                problem = attest.check(folder, entry, keys)
                if problem:
                    out.findings.append(Finding(rid, attest.ATTESTATION_FILE, problem))
        elif keys:
            out.findings.append(Finding(rid, "-", "has no sealed ledger entry, so nothing signed"))
        out.checked += 1
    if run_id is None:
        out.findings += check_chain(entries, read_json(reports_dir / CHAIN_HEAD))
    return out


def _run_folders(reports_dir: Path) -> list[Path]:
    if not reports_dir.is_dir():
        return []
    return [p for p in reports_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]


def _under(row: Mapping[str, Any], reports_dir: Path) -> bool:
    """A database row of a run whose reports went to this folder (a database may serve several projects)."""
    where = row.get("report_dir")
    return not where or Path(where).parent.resolve() == reports_dir.resolve()


def _check_run(
    findings: list[Finding], rid: str, folder: Path, row: Mapping[str, Any] | None, have_db: bool
) -> dict[str, Any] | None:
    """One run's files against its entry (the database's copy first); returns the entry the chain walks."""
    own = read_json(folder / LEDGER_FILE)
    recorded = (row or {}).get("ledger_entry")
    if have_db and row is None:
        if own is None and not folder.is_dir():
            return None
        findings.append(
            Finding(
                rid,
                "-",
                "is not in the database (its pipeline_runs row was deleted?): its own folder cannot vouch for it",
            )
        )
    if recorded is None and own is None:
        legacy = (row or {}).get("reports_sha256")
        if legacy is None and not have_db:
            path = folder / "metrics.json"
            legacy = ((RunMetrics.read(path).ledger if path.is_file() else None) or {}).get("reports_sha256")
        findings.extend(verify_run(rid, folder, legacy))
        return None
    if recorded is None:
        if have_db and row is not None:
            findings.append(Finding(rid, LEDGER_FILE, "has no copy in the database (written after the run?)"))
        entry = sealed_part(own or {})
    else:
        entry = recorded
        if own is None:
            findings.append(Finding(rid, LEDGER_FILE, "deleted"))
        elif sealed_part(own) != recorded:
            findings.append(Finding(rid, LEDGER_FILE, "differs from the database's copy (rewritten?)"))
    if not folder.is_dir():
        findings.append(Finding(rid, "-", "folder deleted"))
        return entry
    if entry_digest(entry) != entry.get("entry_sha256"):
        findings.append(Finding(rid, "ledger entry", "edited: its hash does not match its contents"))
    sealed, derived = folder_hashes(folder)
    findings.extend(_compare(rid, entry.get("files_sha256") or {}, sealed))
    names = set(sealed) | set(derived)
    for f in _compare(rid, (own or {}).get("derived_sha256") or {}, derived):
        source = derived_from(f.report, names | {f.report}) or "its notebook"
        findings.append(
            Finding(rid, f.report, f"{f.problem} — a page derived from {source}: `report {rid}` rebuilds it")
        )
    return entry


def _compare(rid: str, recorded: Mapping[str, str], current: Mapping[str, str]) -> list[Finding]:
    out = []
    for name, digest in sorted(recorded.items()):
        if name not in current:
            out.append(Finding(rid, name, "deleted"))
        elif current[name] != digest:
            out.append(Finding(rid, name, EDITED))
    out += [
        Finding(rid, name, "added after the run (not in the ledger)")
        for name in sorted(set(current) - set(recorded))
    ]
    return out


def check_chain(entries: Mapping[str, dict[str, Any]], head: Mapping[str, Any] | None) -> list[Finding]:
    """Walk the entries by ``seq``: each must follow the one before it; the newest must be the one the head names."""
    by_seq: dict[int, list[dict[str, Any]]] = {}
    for entry in entries.values():
        by_seq.setdefault(int(entry.get("seq") or 0), []).append(entry)
    last = max([*by_seq, int((head or {}).get("seq") or 0)], default=0)
    findings = []
    before: dict[str, Any] | None = None
    for seq in range(1, last + 1):
        here = by_seq.get(seq, [])
        if not here:
            findings.append(
                Finding(
                    "chain",
                    f"seq {seq}",
                    "missing: the run sealed there is gone (its folder and its database row)",
                )
            )
            before = None
            continue
        for extra in here[1:]:
            findings.append(
                Finding(extra["run_id"], f"ledger seq {seq}", f"also claimed by {here[0]['run_id']}")
            )
        entry = here[0]
        expected = entry_digest(before) if before is not None else None
        if (seq == 1 and entry.get("previous") is not None) or (
            before is not None and entry.get("previous") != expected
        ):
            findings.append(
                Finding(
                    entry["run_id"],
                    f"ledger seq {seq}",
                    "breaks the chain: the entry before it is not the one it was sealed after "
                    "(a run before it deleted, reordered or rewritten)",
                )
            )
        before = entry
    if head and last:
        newest = by_seq.get(int(head.get("seq") or 0), [None])[0]
        if newest is None or entry_digest(newest) != head.get("entry_sha256"):
            findings.append(
                Finding(
                    "chain",
                    CHAIN_HEAD,
                    f"names seq {head.get('seq')} ({head.get('run_id')}), which is gone or rewritten",
                )
            )
        elif last > int(head.get("seq") or 0):
            findings.append(
                Finding("chain", CHAIN_HEAD, f"names seq {head.get('seq')}, but entries go on to {last}")
            )
    return findings
