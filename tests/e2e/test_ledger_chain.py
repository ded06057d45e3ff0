"""`report verify` after real demo runs: every file of a run, the chain across runs, signed attestations."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from eventpipe.audit.attest import ENV_KEY_FILE
from eventpipe.audit.chain import CHAIN_HEAD, LEDGER_FILE, entry_digest, folder_hashes
from eventpipe.settings import normalise_database_url
from eventpipe.storage.store import Store
from support import query


def _run_ids(project) -> list[str]:
    """The runs in the order they were sealed (the chain's order)."""
    rows = query(project.database_url, "SELECT run_id FROM pipeline_runs ORDER BY ledger_seq")
    return [r[0] for r in rows]


def _execute(project, sql: str, **params) -> None:
    engine = create_engine(normalise_database_url(project.database_url))
    with engine.begin() as conn:
        conn.execute(text(sql), params)
    engine.dispose()


def _verify(project, capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = project.cli("report", "verify", *args)
    return code, capsys.readouterr().out


def _copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database in WAL mode (the file alone may miss committed pages)."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    src.backup(dst)
    src.close()
    dst.close()


def _reseal(project, folder: Path, **changes) -> None:
    """What someone with write access to the folder and the database does to make an edit pass: the run's
    entry recomputed over the folder as it is now (with ``changes``), in ``ledger.json``, the database and
    the chain's head when it is the newest."""
    own = json.loads((folder / LEDGER_FILE).read_text())
    sealed, derived = folder_hashes(folder)
    entry = {k: v for k, v in own.items() if k not in ("entry_sha256", "derived_sha256")}
    entry.update(files_sha256=sealed, **changes)
    entry["entry_sha256"] = entry_digest(entry)
    (folder / LEDGER_FILE).write_text(json.dumps({**entry, "derived_sha256": derived}))
    store = Store(project.settings())
    store.record_seal(folder.name, entry)
    store.dispose()
    head = json.loads((project.reports / CHAIN_HEAD).read_text())
    if head["run_id"] == folder.name:
        head.update(seq=entry["seq"], entry_sha256=entry["entry_sha256"])
        (project.reports / CHAIN_HEAD).write_text(json.dumps(head))


def _edit(name: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / name
        assert old in path.read_text(), (name, old)
        path.write_text(path.read_text().replace(old, new, 1))

    return edit


def _append(name: str, line: str) -> Callable[[Path], None]:
    def append(folder: Path) -> None:
        with open(folder / name, "a", encoding="utf-8") as f:
            f.write(line)

    return append


def _delete(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).unlink()


TAMPERING = {
    "metrics.json status": (
        _edit("metrics.json", '"status": "succeeded"', '"status": "failed"'),
        "metrics.json edited",
    ),
    "metrics.json counts": (_edit("metrics.json", '"loaded": ', '"loaded": 1'), "metrics.json edited"),
    "run.log": (_append("run.log", "a line written after the run\n"), "run.log edited"),
    "metrics.prom": (_edit("metrics.prom", "} 1.0", "} 0.0"), "metrics.prom edited"),
    "executed notebook": (_edit("03_load.ipynb", "load", "lode"), "03_load.ipynb edited"),
    "run.html": (_edit("run.html", "<body", "<body data-x='1'"), "run.html edited"),
    "notebook html": (_edit("01_extract.html", "<body", "<body data-x='1'"), "01_extract.html edited"),
    "metrics.json deleted": (_delete("metrics.json"), "metrics.json deleted"),
    "run.log deleted": (_delete("run.log"), "run.log deleted"),
    "metrics.prom deleted": (_delete("metrics.prom"), "metrics.prom deleted"),
    "run.html deleted": (_delete("run.html"), "run.html deleted"),
    "ledger.json deleted": (_delete(LEDGER_FILE), "ledger.json deleted"),
    "file added": (lambda folder: (folder / "notes.txt").write_text("x"), "notes.txt added after the run"),
}


def test_every_file_of_a_run_is_covered_and_each_change_is_named(project, capsys, tmp_path):
    assert project.cli("run") == 0
    (run_id,) = _run_ids(project)
    folder = project.reports / run_id
    entry = json.loads((folder / LEDGER_FILE).read_text())
    assert {"metrics.json", "run.log", "metrics.prom", "03_load.ipynb"} <= set(entry["files_sha256"])
    assert {"run.html", "01_extract.html"} <= set(entry["derived_sha256"])
    assert entry["seq"] == 1 and entry["previous"] is None
    assert _verify(project, capsys)[0] == 0
    assert _verify(project, capsys, run_id)[0] == 0

    pristine = tmp_path / "pristine"
    shutil.copytree(folder, pristine)
    for kind, (tamper, named) in TAMPERING.items():
        tamper(folder)
        code, out = _verify(project, capsys, run_id)
        assert code == 1 and named in out, (kind, out)
        if kind in ("run.html", "notebook html", "run.html deleted"):
            assert f"`report {run_id}` rebuilds it" in out, out  # a derived page says so
        shutil.rmtree(folder)
        shutil.copytree(pristine, folder)
    assert _verify(project, capsys, run_id)[0] == 0

    # a ledger.json rewritten to match an edited metrics.json: the database's copy still names the edit
    _edit("metrics.json", '"status": "succeeded"', '"status": "failed"')(folder)
    own = json.loads((folder / LEDGER_FILE).read_text())
    own["files_sha256"] = folder_hashes(folder)[0]
    own["entry_sha256"] = entry_digest({k: v for k, v in own.items() if k != "derived_sha256"})
    (folder / LEDGER_FILE).write_text(json.dumps(own))
    code, out = _verify(project, capsys, run_id)
    assert code == 1 and "metrics.json edited" in out and "differs from the database's copy" in out
    shutil.rmtree(folder)
    shutil.copytree(pristine, folder)

    # the run's database row deleted: its own folder is not taken on its word
    _execute(project, "DELETE FROM pipeline_runs WHERE run_id = :r", r=run_id)
    code, out = _verify(project, capsys, run_id)
    assert code == 1 and "is not in the database" in out


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_rebuilt_report_is_rerecorded_and_still_verifies(project, capsys):
    assert project.cli("run") == 0
    (run_id,) = _run_ids(project)
    assert (
        project.cli("report", run_id, "--with-code") == 0
    )  # derived pages rebuilt, their hashes re-recorded
    assert _verify(project, capsys)[0] == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_chain_breaks_where_a_run_was_deleted_reordered_or_rewritten(project, capsys, tmp_path):
    for _ in range(3):
        assert project.cli("run") == 0
    first, second, third = _run_ids(project)
    entries = [json.loads((project.reports / r / LEDGER_FILE).read_text()) for r in (first, second, third)]
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert (
        entries[1]["previous"] == entries[0]["entry_sha256"]
        and entries[2]["previous"] == entries[1]["entry_sha256"]
    )
    code, out = _verify(project, capsys, "--all")
    assert code == 0 and "the chain holds" in out, out

    backup = tmp_path / "backup"
    db = Path(project.database_url.split("///", 1)[1])
    shutil.copytree(project.reports, backup / "reports")
    _copy_sqlite(db, backup / "db")

    def restore() -> None:
        shutil.rmtree(project.reports)
        shutil.copytree(backup / "reports", project.reports)
        _copy_sqlite(backup / "db", db)
        assert _verify(project, capsys)[0] == 0

    # a whole run deleted: its folder and its database row
    shutil.rmtree(project.reports / second)
    _execute(project, "DELETE FROM pipeline_runs WHERE run_id = :r", r=second)
    code, out = _verify(project, capsys, "--all")
    assert code == 1 and "chain: seq 2 missing" in out, out
    restore()

    # two runs reordered: their places swapped, each entry recomputed to look consistent
    _reseal(project, project.reports / second, seq=3, previous=entries[2]["entry_sha256"])
    _reseal(project, project.reports / third, seq=2, previous=entries[0]["entry_sha256"])
    code, out = _verify(project, capsys, "--all")
    assert code == 1 and "breaks the chain" in out, out
    restore()

    # an earlier run rewritten, entry and database copy included: the next entry no longer follows it
    _edit("metrics.json", '"status": "succeeded"', '"status": "failed"')(project.reports / first)
    _reseal(project, project.reports / first)
    code, out = _verify(project, capsys, "--all")
    assert code == 1 and f"{second}: ledger seq 2 breaks the chain" in out, out
    assert first not in out  # its own files match its (rewritten) entry: the chain is what gives it away
    restore()

    # the newest run deleted: the chain's head still names it
    shutil.rmtree(project.reports / third)
    _execute(project, "DELETE FROM pipeline_runs WHERE run_id = :r", r=third)
    code, out = _verify(project, capsys)
    assert code == 1 and f"chain.json names seq 3 ({third})" in out, out


def test_a_run_forged_without_the_private_key_fails_signature_verification(
    project, capsys, tmp_path, monkeypatch
):
    key = tmp_path / "keys" / "signing.key"
    assert project.cli("report", "keygen", str(key)) == 0
    assert key.stat().st_mode & 0o777 == 0o600 and key.with_name("signing.key.pub").is_file()
    assert project.cli("report", "keygen", str(key)) == 2  # a key is never overwritten
    public = str(key.with_name("signing.key.pub"))

    monkeypatch.setenv(ENV_KEY_FILE, str(key))
    assert project.cli("run") == 0
    (run_id,) = _run_ids(project)
    folder = project.reports / run_id
    envelope = json.loads((folder / "attestation.dsse.json").read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    code, out = _verify(project, capsys, "--public-key", public)
    assert code == 0 and "every run is signed" in out, out

    # forged: metrics.json edited and the ledger recomputed in the folder, the database and the head
    _edit("metrics.json", '"status": "succeeded"', '"status": "failed"')(folder)
    _reseal(project, folder)
    assert _verify(project, capsys)[0] == 0  # hashes and chain alone cannot tell
    code, out = _verify(project, capsys, "--public-key", public)
    assert code == 1 and "attestation is signed, but for another ledger entry" in out, out

    # ... and re-signed with a key of the forger's own: no signature verifies with the real public key
    monkeypatch.delenv(ENV_KEY_FILE)
    forger = tmp_path / "forger.key"
    assert project.cli("report", "keygen", str(forger)) == 0
    from eventpipe.audit.attest import attest, signing_key
    from eventpipe.core.run_metrics import RunMetrics

    metrics = RunMetrics.read(folder / "metrics.json")
    entry = {k: v for k, v in json.loads((folder / LEDGER_FILE).read_text()).items() if k != "derived_sha256"}
    attest(folder, entry, metrics, metrics.ledger["params"], signing_key({ENV_KEY_FILE: str(forger)}))
    code, out = _verify(project, capsys, "--public-key", public)
    assert code == 1 and "no signature verifies with the given public key" in out, out
    code, out = _verify(project, capsys, "--public-key", f"{forger}.pub")  # the forger's own key: it verifies
    assert code == 0, out


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_run_without_a_key_is_reported_unsigned(project, capsys, tmp_path):
    key = tmp_path / "signing.key"
    assert project.cli("report", "keygen", str(key)) == 0
    assert project.cli("run") == 0
    (run_id,) = _run_ids(project)
    assert not (project.reports / run_id / "attestation.dsse.json").exists()
    code, out = _verify(project, capsys, "--public-key", f"{key}.pub")
    assert code == 1 and "has no signed attestation" in out


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_key_that_cannot_be_used_stops_the_run_before_it_starts(project, capsys, tmp_path, monkeypatch):
    (tmp_path / "rsa.key").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    monkeypatch.setenv(ENV_KEY_FILE, str(tmp_path / "rsa.key"))
    assert project.cli("run") == 2
    assert "signing key" in capsys.readouterr().err
    assert not project.reports.exists() or not any(project.reports.iterdir())
