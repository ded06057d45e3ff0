"""A real server that nobody here wrote: json-server 0.17.4 from npm (package.json, package-lock.json), serving
a db.json generated from the demo events, read with params/sources/json-server.yaml into PostgreSQL."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
import requests

from eventpipe.demo.data import DemoConfig, DemoData, Generated
from support import IN_CI, ROOT, Project, query, runs, table_rows

START = datetime(2024, 5, 1, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _json_server_bin() -> Path:
    binary = ROOT / "node_modules" / ".bin" / "json-server"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            if IN_CI:
                pytest.fail("npm is missing: CI must run the json-server test")
            pytest.skip("npm is not installed")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT, check=True, capture_output=True)
    return binary


@pytest.fixture(scope="module")
def data() -> DemoData:
    return DemoData(
        DemoConfig(start=START, events_per_hour=60, dirty_share=0.05, live=False, end=START + 6 * HOUR)
    )


def db_events(data: DemoData) -> list[tuple[Generated, dict]]:
    """The demo events json-server serves (objects only: it stores nothing else), each with ``id`` and ``ts``."""
    out = []
    for i, g in enumerate(data.events(START, START + 6 * HOUR), 1):
        item = orjson.loads(g.body)
        if isinstance(item, dict):
            out.append((g, {**item, "id": i, "ts": _iso_ms(g.sort_ms)}))
    return out


@pytest.fixture(scope="module")
def json_server(data: DemoData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """json-server on a free loopback port over db.json: the demo events in API order, each with an id and
    ``ts`` (its instant as ISO text with milliseconds) for the _gte/_lte filters."""
    binary = _json_server_bin()
    db = tmp_path_factory.mktemp("json-server") / "db.json"
    db.write_bytes(orjson.dumps({"events": [item for _, item in db_events(data)]}))
    port = _free_port()
    proc = subprocess.Popen(
        [str(binary), "--host", "127.0.0.1", "--port", str(port), "--quiet", str(db)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{url}/events?_limit=1", timeout=1).raise_for_status()
            break
        except requests.RequestException:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("json-server did not start") from None
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_json_server_preset_loads_the_exact_table(json_server, data, tmp_path, pg_fresh_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", pg_fresh_url)
    monkeypatch.setenv("API_BASE_URL", json_server)
    project = Project(tmp_path, pg_fresh_url)
    since, until = START + HOUR, START + 4 * HOUR
    preset = str(ROOT / "params" / "sources" / "json-server.yaml")
    code = project.cli(
        "backfill",
        *("--start", since.isoformat(), "--end", until.isoformat(), "--params", preset),
        *("-p", "source.params._limit=25", "-p", "quality.min_pass_rate=0.8", "-p", "runner.keep_runs=true"),
    )
    assert code == 0
    expected = {k: (t.properties, t.session_id) for k, t in data.expected_rows(since, until).items()}
    assert table_rows(pg_fresh_url) == expected
    raws = {r[0] for r in query(pg_fresh_url, "SELECT raw FROM dead_letter")}
    dirty = [
        g for g in data.events(since, until) if g.truth is None and isinstance(orjson.loads(g.body), dict)
    ]
    assert len(raws) == len(dirty) and all(json.loads(r)["ts"] for r in raws)  # as json-server sent them
    run = runs(pg_fresh_url)[-1]
    metrics = json.loads((project.reports / run["run_id"] / "metrics.json").read_text())
    assert metrics["pages"] if "pages" in metrics else True
    assert run["extracted"] == sum(
        1 for g in data.events(since, until) if isinstance(orjson.loads(g.body), dict)
    )
