"""Window locks: disjoint windows write at the same time, overlapping ones never do, dead holders block nobody."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from eventpipe.errors import RunInProgress
from eventpipe.storage.lock import WindowLocks
from eventpipe.storage.store import Store
from support import HISTORY_START, expected_table, query, runs, table_rows

START = HISTORY_START
SLOW_LOAD = {"EVENTPIPE_INJECT": "load.before_commit=sleep:4"}
DAY_ONE = ("backfill", "--start", "2024-05-01", "--end", "2024-05-02")


def _finished(proc, timeout: float = 180) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except Exception:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc.returncode, err


def _spans(database_url: str) -> dict[tuple[datetime, datetime], tuple[datetime, datetime]]:
    """Window -> (started_at, finished_at) of each run."""
    rows = query(
        database_url, "SELECT window_since, window_until, started_at, finished_at FROM pipeline_runs"
    )

    def utc(v):
        v = datetime.fromisoformat(v) if isinstance(v, str) else v
        return v if v.tzinfo else v.replace(tzinfo=timezone.utc)

    return {(utc(a), utc(b)): (utc(s), utc(f)) for a, b, s, f in rows}


def _together(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_runs_over_disjoint_windows_write_at_the_same_time(project, history):
    first = project.spawn(*DAY_ONE, env=SLOW_LOAD)
    second = project.spawn("backfill", "--start", "2024-05-02", "--end", "2024-05-03", env=SLOW_LOAD)
    for proc in (first, second):
        code, err = _finished(proc)
        assert code == 0, err[-3000:]
    spans = list(_spans(project.database_url).values())
    assert len(spans) == 2 and _together(*spans), spans
    assert table_rows(project.database_url) == expected_table(history, START, START + timedelta(days=2))


def test_runs_over_overlapping_windows_never_write_together(project, history):
    first = project.spawn(*DAY_ONE, "--wait", env=SLOW_LOAD)
    second = project.spawn(
        "backfill", "--start", "2024-05-01T12:00:00", "--end", "2024-05-02T12:00:00", "--wait", env=SLOW_LOAD
    )
    assert _finished(first)[0] == 0 and _finished(second)[0] == 0
    spans = list(_spans(project.database_url).values())
    assert len(spans) == 2 and not _together(*spans), spans
    end = START + timedelta(days=1, hours=12)
    assert table_rows(project.database_url) == expected_table(history, START, end)


def test_an_overlapping_run_without_wait_names_the_holder(project, history):
    slow = project.spawn_held(SLOW_LOAD["EVENTPIPE_INJECT"], *DAY_ONE)
    try:
        store = Store(project.settings())
        [holder] = WindowLocks(store).live_claims()
        with pytest.raises(RunInProgress) as caught:
            with WindowLocks(store).hold(START + timedelta(hours=6), START + timedelta(hours=30), "probe"):
                pass
        assert caught.value.run_id == holder.run_id
        with WindowLocks(store).hold(START + timedelta(days=1), START + timedelta(days=2), "disjoint"):
            pass  # the window next to it is free
        store.dispose()
    finally:
        assert _finished(slow)[0] == 0


def test_an_incremental_run_completes_while_a_backfill_of_older_windows_runs(project, history, clock):
    # held in its transform stage: outside any transaction (SQLite itself lets one transaction write at a time)
    backfill = project.spawn_held("transform.chunk=sleep:25", *DAY_ONE)
    try:
        since = clock.now - timedelta(hours=2)
        assert project.cli("run", "-p", f"window.initial_since={since.isoformat()}") == 0
        assert backfill.poll() is None, "the backfill should still be loading"
        kinds = {r["kind"]: r["status"] for r in runs(project.database_url)}
        assert kinds == {"backfill": "running", "incremental": "succeeded"}
    finally:
        assert _finished(backfill)[0] == 0
    assert {r["kind"]: r["status"] for r in runs(project.database_url)} == {
        "backfill": "succeeded",
        "incremental": "succeeded",
    }
    mark_at = query(project.database_url, "SELECT watermark FROM pipeline_state")
    assert len(mark_at) == 1  # only the incremental run moved it


def test_a_killed_holder_never_blocks_the_next_run(project, history):
    victim = project.spawn_held("load.before_commit=sleep:60", *DAY_ONE)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert project.cli(*DAY_ONE) == 0
    statuses = [(r["status"], r["failure_class"]) for r in runs(project.database_url)]
    assert statuses == [("failed", "interrupted"), ("succeeded", None)]
    assert table_rows(project.database_url) == expected_table(history, START, START + timedelta(days=1))


class _SameEvent(BaseHTTPRequestHandler):
    """An API that answers every window with the same late event: two windows, one key."""

    EVENT = {
        "user_id": "u-late",
        "event": "Page View",
        "timestamp": "2024-05-01T10:00:00Z",
        "properties": {"page": "/"},
        "session_id": "s1",
    }

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = json.dumps({"items": [self.EVENT], "has_more": False}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def same_event_api(project, monkeypatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SameEvent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("API_BASE_URL", url)
    yield url
    server.shutdown()
    server.server_close()


def test_two_writers_of_different_windows_that_receive_the_same_event_leave_one_row(project, same_event_api):
    first = project.spawn(*DAY_ONE, env=SLOW_LOAD)
    second = project.spawn("backfill", "--start", "2024-05-03", "--end", "2024-05-04", env=SLOW_LOAD)
    assert _finished(first)[0] == 0 and _finished(second)[0] == 0
    spans = list(_spans(project.database_url).values())
    assert _together(*spans), spans  # they really ran concurrently
    assert query(project.database_url, "SELECT user_id, event_type FROM analytics") == [
        ("u-late", "page_view")
    ]
    assert sorted(r["status"] for r in runs(project.database_url)) == ["succeeded", "succeeded"]
