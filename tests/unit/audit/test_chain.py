"""The ledger chain on folders alone: seal order, derived pages, where `verify` says the chain breaks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from eventpipe.audit.chain import CHAIN_HEAD, LEDGER_FILE, record_derived, seal
from eventpipe.audit.verify import verify

LEDGER = {"code": {"package_version": "0"}, "notebooks_sha256": {}, "params_sha256": "p" * 64}


class Rows:
    """A database's copy of the sealed entries (``Store.record_seal`` / ``Store.ledger_rows``)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def record_seal(self, run_id: str, entry: dict[str, Any]) -> None:
        self.rows[run_id] = {"report_dir": None, "reports_sha256": None, "ledger_entry": entry}


def _runs(reports: Path, n: int, db: Rows) -> list[Path]:
    folders = []
    for i in range(n):
        folder = reports / f"run-{i}"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"run_id": folder.name}))
        (folder / "01_extract.ipynb").write_text("{}")
        (folder / "01_extract.html").write_text("<p>page</p>")
        seal(folder, LEDGER, db)
        folders.append(folder)
    return folders


def _problems(reports: Path, rows: dict[str, Any] | None) -> list[str]:
    return [str(f) for f in verify(reports, rows).changed]


def test_entries_follow_each_other_in_the_order_they_were_sealed(tmp_path):
    db = Rows()
    folders = _runs(tmp_path, 3, db)
    entries = [json.loads((f / LEDGER_FILE).read_text()) for f in folders]
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert [e["previous"] for e in entries] == [None, entries[0]["entry_sha256"], entries[1]["entry_sha256"]]
    assert set(entries[0]["files_sha256"]) == {"metrics.json", "01_extract.ipynb"}
    assert set(entries[0]["derived_sha256"]) == {"01_extract.html"}
    assert json.loads((tmp_path / CHAIN_HEAD).read_text())["run_id"] == "run-2"
    assert _problems(tmp_path, db.rows) == [] and _problems(tmp_path, None) == []


def test_a_rebuilt_page_is_rerecorded_but_an_edited_one_is_named(tmp_path):
    db = Rows()
    (folder,) = _runs(tmp_path, 1, db)
    (folder / "01_extract.html").write_text("<p>edited</p>")
    assert ["run-0: 01_extract.html edited"] == [p.split(" (")[0] for p in _problems(tmp_path, db.rows)]
    assert record_derived(folder)
    assert _problems(tmp_path, db.rows) == []


def test_a_run_deleted_from_the_middle_or_the_end_breaks_the_chain_there(tmp_path):
    db = Rows()
    folders = _runs(tmp_path, 3, db)
    shutil.rmtree(folders[1])
    del db.rows["run-1"]
    assert _problems(tmp_path, db.rows) == [
        "chain: seq 2 missing: the run sealed there is gone (its folder and its database row)"
    ]
    shutil.rmtree(folders[2])
    del db.rows["run-2"]
    problems = _problems(tmp_path, db.rows)
    assert "chain: seq 3 missing" in " ".join(problems) and any(
        "chain.json names seq 3" in p for p in problems
    )


def test_without_the_database_a_folder_vouches_for_itself_and_with_it_a_missing_row_is_named(tmp_path):
    db = Rows()
    _runs(tmp_path, 2, db)
    del db.rows["run-1"]
    assert _problems(tmp_path, None) == []
    assert _problems(tmp_path, db.rows) == [
        "run-1: is not in the database (its pipeline_runs row was deleted?): its own folder cannot vouch for it"
    ]


class NoDatabase:
    def record_seal(self, run_id: str, entry: dict[str, Any]) -> None:
        """The folder's copy only (a worker process has no shared fake database)."""


def _seal_some(reports: Path, worker: int) -> None:
    for i in range(4):
        folder = reports / f"w{worker}-{i}"
        folder.mkdir()
        (folder / "metrics.json").write_text("{}")
        seal(folder, LEDGER, NoDatabase())


def test_runs_sealing_at_the_same_time_still_form_one_chain(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_seal_some, args=(tmp_path, w)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]
    seqs = sorted(json.loads((f / LEDGER_FILE).read_text())["seq"] for f in tmp_path.iterdir() if f.is_dir())
    assert seqs == list(range(1, 17))
    assert _problems(tmp_path, None) == []
