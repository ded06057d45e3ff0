"""The demo API against hostile clients, over real sockets: bad instants answer 400, half-sent requests
are dropped after the idle timeout instead of holding a thread each."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from eventpipe.demo.data import DemoConfig, DemoData
from eventpipe.demo.server import DEMO_KEY, DemoServer


@pytest.fixture
def server():
    s = DemoServer(DemoData(DemoConfig(events_per_hour=10)), api_key=DEMO_KEY, idle_timeout_s=1.0).start()
    yield s
    s.stop()


@pytest.mark.parametrize(
    "query",
    [
        "since=9999-12-31T23:59:59-01:00",
        "until=0001-01-01T00:00:00%2B01:00",
        "since=notadate",
    ],
)
def test_an_instant_beyond_the_calendar_answers_400(server, query):
    r = requests.get(
        f"{server.url}/analytics?{query}", headers={"Authorization": f"Bearer {DEMO_KEY}"}, timeout=5
    )
    assert r.status_code == 400 and "bad query" in r.json()["error"]


def test_half_sent_requests_are_dropped_after_the_idle_timeout(server):
    baseline = threading.active_count()
    host, port = server.server_address[:2]
    started = time.monotonic()
    socks = []
    for _ in range(50):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"GET /analytics HTTP/1.1\r\nHost: x\r\n")  # never finished
        socks.append(s)
    r = requests.get(f"{server.url}/health", timeout=5)  # the server still answers others meanwhile
    assert r.status_code == 200
    for s in socks:  # the server hangs up on each (recv times out here if it never does)
        s.settimeout(8)
        assert s.recv(1024) == b""
        s.close()
    assert time.monotonic() - started < 8
    deadline = time.monotonic() + 5
    while threading.active_count() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= baseline, "half-sent requests still hold their threads"


def test_the_default_idle_timeout_is_bounded():
    s = DemoServer(DemoData(DemoConfig()), api_key=DEMO_KEY)
    try:
        assert 0 < s.idle_timeout_s <= 30
    finally:
        s.server_close()
