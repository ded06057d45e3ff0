"""The audit commands: ``report [RUN_ID...]``, ``report verify [RUN_ID]``, ``report keygen FILE``, ``report --serve``,
``status --run``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from ..core.run_metrics import RunMetrics
from ..errors import SettingsError
from ..words import counted
from .serve import serve_until_interrupted


def add_report_parser(sub: Any, common: Any) -> None:
    rp = sub.add_parser(
        "report",
        help="(re)build HTML reports and the run index; `report verify` checks them",
        description="report [RUN_ID ...] rebuilds; report verify [RUN_ID] checks every file of the runs "
        "against their ledger entries and, without RUN_ID, the chain across runs; report keygen FILE makes "
        "a signing key pair; report --serve serves the reports folder",
    )
    common(rp)
    rp.add_argument(
        "run_ids",
        nargs="*",
        metavar="RUN_ID",
        help="runs to rebuild (default: all); or `verify [RUN_ID]`, or `keygen FILE`",
    )
    rp.add_argument("--all", action="store_true", help="with verify: every run and the chain (the default)")
    rp.add_argument(
        "--public-key",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="with verify: check each run's signed attestation with this Ed25519 public key (PEM); "
        "repeat it for the keys of earlier rotations",
    )
    rp.add_argument("--with-code", action="store_true", help="keep the code cells in the HTML")
    rp.add_argument(
        "--serve", action="store_true", help="serve the reports folder on 127.0.0.1 after building"
    )
    rp.add_argument("--port", type=int, default=8000, help="port for --serve (0: a free one; default 8000)")
    rp.add_argument("--no-build", action="store_true", help="with --serve: serve as it is, rebuild nothing")


def cmd_report(args: argparse.Namespace, settings: Any) -> int:
    reports_dir = settings.path("reports_dir")
    if args.run_ids[:1] == ["verify"]:
        if len(args.run_ids) > 2 or (args.all and len(args.run_ids) == 2):
            raise SettingsError("report verify takes one RUN_ID, or none (--all: every run and the chain)")
        run_id = args.run_ids[1] if len(args.run_ids) == 2 else None
        return verify(settings, reports_dir, run_id, args.public_key)
    if args.run_ids[:1] == ["keygen"]:
        if len(args.run_ids) != 2:
            raise SettingsError(
                "report keygen takes the private key's FILE (the public key goes to FILE.pub)"
            )
        from ..audit.attest import ENV_KEY_FILE, keygen

        private, public = keygen(Path(args.run_ids[1]))
        print(f"private key: {private} (keep it secret; the runs read it from {ENV_KEY_FILE})")
        print(f"public key:  {public} (give it to whoever verifies: report verify --public-key {public})")
        return 0
    if not args.no_build:
        from ..audit.build import rebuild

        _complete_audits(settings, args.run_ids)
        done = rebuild(reports_dir, args.run_ids, with_code=args.with_code)
        _store_html_hashes(settings, reports_dir, done)
        print(f"rebuilt {counted(len(done), 'run')}; index: {reports_dir / 'index.html'}")
    if args.serve:
        from ..audit.serve import make_server

        try:
            server = make_server(reports_dir, args.port)
        except OSError as e:
            raise SettingsError(
                f"report --serve cannot listen on 127.0.0.1:{args.port} ({e.strerror}): pick another --port"
            ) from None
        serve_until_interrupted(
            server, f"serving {reports_dir} at http://127.0.0.1:{server.server_address[1]}/index.html"
        )
    return 0


def _store(settings: Any) -> Any | None:
    """The run database when it can be reached (the reports can be rebuilt and verified without it)."""
    from ..storage.store import Store

    store = Store(settings)
    try:
        store.ping()
        store.create_schema()
    except Exception as e:  # noqa: BLE001
        logging.getLogger(__name__).warning("database not used: %s", e)
        return None
    return store


def _complete_audits(settings: Any, run_ids: list[str]) -> None:
    """Before the rebuild: runs whose process died are marked interrupted, and the runs named (all that wait
    for it when none is) get the audit files they ended without (``orchestration.recovery``)."""
    from ..errors import AuditIncomplete, PipelineError
    from ..orchestration.recovery import complete, recover

    store = _store(settings)
    if store is None:
        return
    try:
        recover(settings, store)
        for run_id in run_ids or store.unfinished_audits():
            if store.run_entry(run_id) is None:
                continue  # a run the database does not know: the rebuild says so if it has no folder either
            try:
                if complete(settings, store, run_id):
                    print(f"run {run_id}: its missing audit files are written and sealed")
            except AuditIncomplete as e:
                raise PipelineError(str(e)) from None
            except OSError as e:
                raise PipelineError(
                    f"run {run_id}: its audit files cannot be written ({e.strerror or e}): {e.filename or ''}"
                ) from None
    finally:
        store.dispose()


def _store_html_hashes(settings: Any, reports_dir: Path, run_ids: list[str]) -> None:
    store = _store(settings)
    if store is None:
        return
    try:
        for rid in run_ids:
            path = reports_dir / rid / "metrics.json"
            ledger = RunMetrics.read(path).ledger if path.is_file() else None
            if ledger and store.run_entry(rid) is not None:
                store.record_ledger(rid, ledger)
    finally:
        store.dispose()


def verify(settings: Any, reports_dir: Path, run_id: str | None, public_keys: list[Path]) -> int:
    """Every file of each run against its ledger entry (the database's copy first), the chain across runs
    when no ``run_id`` is given, and with ``public_keys`` each run's signed attestation; exit 1 on a finding."""
    from ..audit.attest import load_public_key
    from ..audit.verify import verify as verify_runs

    keys = [load_public_key(p) for p in public_keys]
    store = _store(settings)
    try:
        rows = store.ledger_rows() if store is not None else None
    finally:
        if store is not None:
            store.dispose()
    if rows is None:
        print(
            "NOTE     the database cannot be reached: each run is checked against its own folder's ledger only"
        )
    result = verify_runs(reports_dir, rows, run_id, keys)
    if run_id and not result.checked:
        raise SettingsError(f"report verify: no run {run_id!r} in the database or under {reports_dir}")
    for f in result.findings:
        print(f"{f.level:<8} {f}")
    bad = result.changed
    what = "every file matches its ledger entry" + ("" if run_id else ", the chain holds")
    if keys:
        what += ", every run is signed"
    print(f"{counted(result.checked, 'run')} checked: " + (counted(len(bad), "finding") if bad else what))
    return 1 if bad else 0


# -- status --run -------------------------------------------------------------------------------------


def status_run(store: Any, run_id: str, as_json: bool) -> int:
    entry = store.run_entry(run_id)
    if entry is None:  # the short id that `status` shows: the unique tail of a run id
        matches = [
            r["run_id"] for r in store.recent_runs(limit=100_000) if r["run_id"].endswith(f"-{run_id}")
        ]
        if len(matches) > 1:
            raise SettingsError(f"status --run: {run_id!r} names {len(matches)} runs; give the full run id")
        entry = store.run_entry(matches[0]) if matches else None
    if entry is None:
        raise SettingsError(f"status --run: no run {run_id!r} in {store.masked_url}")
    if as_json:
        print(json.dumps(entry, indent=2, default=str))
        return 0
    width = max(len(k) for k in entry)
    for k, v in entry.items():
        if isinstance(v, dict):
            print(f"{k:<{width}}")
            for kk, vv in v.items():
                print(f"  {kk}: {json.dumps(vv, default=str)}")
        else:
            print(f"{k:<{width}}  {'-' if v is None else v}")
    return 0
