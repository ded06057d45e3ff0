"""The record rules' candidates, side by side: decode + parse the same demo pages, each in its own process.

    .venv/bin/python bench/record_rules.py --events 100000 [--repeat 3] [--out bench/record_rules.json]

On a shared machine the wall times drift; ``cpu_s`` (the process's CPU seconds per pass, all threads,
median) and ``records_per_cpu_s`` are steadier. Each candidate turns the pages (JSON arrays of 1,000 items, the demo API's dirty data) into the five
typed columns. Per candidate: records/s (median of ``--repeat``), the process's peak RSS over its
baseline (pages loaded, imports done), and what it did with the values the record rules must keep
(compared with ``records_reference``, the per-record rules). duckdb and polars are comparisons only:
they are not project dependencies (``pip install duckdb polars`` into your own .venv to run them).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CANDIDATES = ("reference", "columns", "msgspec_typed", "msgspec_any", "pyarrow_json", "duckdb", "polars")


def _pages(events: int) -> list[bytes]:
    from eventpipe.demo.data import _generate_hour

    per_hour = events // 24
    bodies = [g.body for hour in range(24) for g in _generate_hour(7, per_hour, 0.02, 0.02, 473000 + hour)]
    return [b"[" + b",".join(bodies[i : i + 1000]) + b"]" for i in range(0, len(bodies), 1000)]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


class _PeakRss:
    """The process's RSS sampled every 5 ms on a thread: its highest value since ``start``."""

    def __init__(self) -> None:
        self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mb())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _rss_mb())


def _loads_all(pages: list[bytes]) -> list:
    from eventpipe.jsonio import loads

    items: list = []
    for p in pages:
        items.extend(loads(p))
    return items


def _run(name: str, pages: list[bytes], ndjson: Path) -> tuple[int, dict]:
    """One pass of a candidate: (rows out, notes)."""
    if name in ("reference", "columns"):
        from eventpipe.core import records, records_reference
        from eventpipe.jsonio import gc_paused

        module = records_reference if name == "reference" else records
        with gc_paused():  # as the transform runs them
            items = _loads_all(pages)
            df = module.parse_items(list(range(len(items))), items)
        return len(df), {"rejected": int(sum(bool(r) for r in df["reasons"]))}
    if name.startswith("msgspec"):
        import msgspec

        class Item(msgspec.Struct):
            user_id: str | int | None = None
            event: str | None = None
            timestamp: str | int | float | None = None
            properties: dict | str | None = None
            session_id: str | int | None = None

        typed = msgspec.json.Decoder(list[Item])
        untyped = msgspec.json.Decoder()
        n = failed = 0
        for p in pages:
            if name == "msgspec_typed":
                try:
                    n += len(typed.decode(p))
                    continue
                except msgspec.ValidationError:
                    failed += 1  # a value of another type anywhere in the page: the page goes the slow way
            n += len(untyped.decode(p))
        return n, {"pages_failing_typed_decode": failed, "pages": len(pages)}
    if name == "pyarrow_json":
        import pyarrow as pa
        import pyarrow.json as pj

        schema = pa.schema(
            [
                ("user_id", pa.string()),
                ("event", pa.string()),
                ("timestamp", pa.string()),
                ("properties", pa.string()),
                ("session_id", pa.string()),
            ]
        )
        try:
            t = pj.read_json(
                ndjson,
                parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
            )
            return t.num_rows, {}
        except pa.ArrowInvalid as e:
            return 0, {"error": str(e)[:160]}
    if name == "duckdb":
        import duckdb

        con = duckdb.connect()
        rows = con.execute(
            "SELECT json_type(json, '$.user_id'), json_extract_string(json, '$.user_id'), "
            "json_extract_string(json, '$.event'), json_type(json, '$.timestamp'), "
            "json_extract_string(json, '$.timestamp'), json_extract(json, '$.properties')::VARCHAR, "
            "json_extract_string(json, '$.session_id') "
            f"FROM read_json_objects('{ndjson}', format='newline_delimited')"
        ).fetchall()
        return len(rows), {}
    if name == "polars":
        import polars as pl

        schema = {k: pl.String for k in ("user_id", "event", "timestamp", "properties", "session_id")}
        try:
            df = pl.read_ndjson(ndjson, schema=schema)
            return df.height, {}
        except Exception as e:  # noqa: BLE001 (recorded: what it refused)
            return 0, {"error": f"{type(e).__name__}: {str(e)[:160]}"}
    raise SystemExit(f"unknown candidate {name}")


def _child(name: str, pages_file: Path, ndjson: Path, repeat: int) -> None:
    import pickle

    pages = pickle.loads(pages_file.read_bytes())
    import pandas  # noqa: F401  (imported before the baseline, as in the pipeline)

    base = _rss_mb()
    sampler = _PeakRss()
    times, cpus = [], []
    rows, notes = 0, {}
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        rows, notes = _run(name, pages, ndjson)
        times.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    peak = sampler.stop()
    print(
        json.dumps(
            {
                "candidate": name,
                "rows": rows,
                "seconds": statistics.median(times),
                "runs_s": [round(x, 3) for x in times],
                "peak_rss_over_baseline_mb": round(peak - base, 1),
                "cpu_s": round(statistics.median(cpus), 3),
                "cpu_runs_s": [round(x, 3) for x in cpus],
                **notes,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default=",".join(CANDIDATES))
    ap.add_argument("--out", help="write the results here (with --only: merged into the file's results)")
    ap.add_argument("--child", nargs=3, metavar=("NAME", "PAGES", "NDJSON"))
    a = ap.parse_args()
    if a.child:
        _child(a.child[0], Path(a.child[1]), Path(a.child[2]), a.repeat)
        return
    import pickle

    import orjson

    pages = _pages(a.events)
    with tempfile.TemporaryDirectory() as tmp:
        pages_file, ndjson = Path(tmp) / "pages.pkl", Path(tmp) / "items.ndjson"
        pages_file.write_bytes(pickle.dumps(pages))
        with ndjson.open("wb") as f:
            for p in pages:
                for item in orjson.loads(p):
                    f.write(orjson.dumps(item) + b"\n")
        events = sum(len(orjson.loads(p)) for p in pages)
        results = []
        for name in a.only.split(","):
            cmd = [
                sys.executable,
                __file__,
                "--repeat",
                str(a.repeat),
                "--child",
                name,
                str(pages_file),
                str(ndjson),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                results.append({"candidate": name, "error": done.stderr.strip().splitlines()[-1][:200]})
            else:
                r = json.loads(done.stdout.strip().splitlines()[-1])
                r["records_per_s"] = round(events / r["seconds"]) if r["seconds"] else None
                r["records_per_cpu_s"] = round(events / r["cpu_s"]) if r["cpu_s"] else None
                results.append(r)
            print(json.dumps(results[-1]), flush=True)
    if a.out:
        out = Path(a.out)
        if out.exists() and a.only != ",".join(CANDIDATES):  # merge into the earlier results
            names = {r["candidate"] for r in results}
            results += [r for r in json.loads(out.read_text())["results"] if r["candidate"] not in names]
            results.sort(key=lambda r: CANDIDATES.index(r["candidate"]))
        out.write_text(json.dumps({"events": events, "repeat": a.repeat, "results": results}, indent=2))


if __name__ == "__main__":
    main()
