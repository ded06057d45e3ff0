"""The audit commands: ``report [RUN_ID...]``, ``report verify [RUN_ID]``, ``report --serve``, ``status --run``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from ..core.run_metrics import RunMetrics
from ..errors import SettingsError
from .serve import serve_until_interrupted


def add_report_parser(sub: Any, common: Any) -> None:
    rp = sub.add_parser(
        "report",
        help="(re)build HTML reports and the run index; `report verify` checks them",
        description="report [RUN_ID ...] rebuilds; report verify [RUN_ID] checks the saved "
        "reports against the ledger; report --serve serves the reports folder",
    )
    common(rp)
    rp.add_argument(
        "run_ids", nargs="*", metavar="RUN_ID", help="runs to rebuild (default: all); or `verify [RUN_ID]`"
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
        if len(args.run_ids) > 2:
            raise SettingsError("report verify takes at most one RUN_ID")
        return verify(settings, reports_dir, args.run_ids[1] if len(args.run_ids) == 2 else None)
    if not args.no_build:
        from ..audit.build import rebuild

        done = rebuild(reports_dir, args.run_ids, with_code=args.with_code)
        _store_html_hashes(settings, reports_dir, done)
        print(f"rebuilt {len(done)} run(s); index: {reports_dir / 'index.html'}")
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


def verify(settings: Any, reports_dir: Path, run_id: str | None) -> int:
    """Recompute every saved report's SHA-256 and compare with the ledger (the database's copy first)."""
    from ..audit.ledger import verify_run

    store = _store(settings)
    recorded: dict[str, dict[str, str] | None] = {}
    folders: dict[str, Path] = {}
    try:
        if store is not None:
            if run_id:
                entry = store.run_entry(run_id)
                rows = [entry] if entry else []
            else:
                rows = [store.run_entry(r["run_id"]) for r in store.recent_runs(limit=100000)]
            for r in rows:
                if r and r.get("reports_sha256") is not None:
                    recorded[r["run_id"]] = r["reports_sha256"]
                    folders[r["run_id"]] = (
                        Path(r["report_dir"]) if r.get("report_dir") else reports_dir / r["run_id"]
                    )
    finally:
        if store is not None:
            store.dispose()
    for folder in reports_dir.iterdir() if reports_dir.is_dir() else ():
        if not folder.is_dir() or (run_id and folder.name != run_id) or folder.name in recorded:
            continue
        path = folder / "metrics.json"
        ledger = RunMetrics.read(path).ledger if path.is_file() else None
        recorded[folder.name] = (ledger or {}).get("reports_sha256")
        folders[folder.name] = folder
    if run_id and run_id not in recorded:
        raise SettingsError(f"report verify: no run {run_id!r} in the database or under {reports_dir}")
    findings = []
    for rid in sorted(recorded):
        findings += verify_run(rid, folders[rid], recorded[rid])
    for f in findings:
        print(f"CHANGED  {f}" if "no ledger" not in f.problem else f"UNKNOWN  {f}")
    bad = [f for f in findings if "no ledger" not in f.problem]
    checked = len(recorded)
    print(
        f"{checked} run(s) checked: "
        + (f"{len(bad)} report(s) differ from the ledger" if bad else "every saved report matches the ledger")
    )
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
