"""The demo API against hostile clients, over real sockets: bad instants answer 400, half-sent requests
are dropped after the idle timeout instead of holding a thread each."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import requests

from eventpipe.demo.data import DemoConfig, DemoData
from eventpipe.demo.server import DEMO_KEY, DEMO_PROJECT_ID, DEMO_USER, DemoServer


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


# -- the styles the presets are tested against as shipped -------------------------------------------------

DAY = "from_date=2024-05-01&to_date=2024-05-01"


@pytest.fixture
def mixpanel():
    data = DemoData(DemoConfig(events_per_hour=10, live=False))
    s = DemoServer(data, api_key=DEMO_KEY, style="mixpanel-export", project_secret="project-secret-1").start()
    yield s
    s.stop()


@pytest.mark.parametrize(
    "auth, query, status",
    [
        ((DEMO_USER, DEMO_KEY), f"{DAY}&project_id={DEMO_PROJECT_ID}", 200),  # a service account
        (("project-secret-1", ""), DAY, 200),  # the project secret as the user, an empty password
        ((DEMO_USER, DEMO_KEY), DAY, 400),  # a service account must name its project
        ((DEMO_USER, DEMO_KEY), f"{DAY}&project_id=999", 403),
        ((DEMO_USER, "wrong-key"), f"{DAY}&project_id={DEMO_PROJECT_ID}", 401),
        (("project-secret-1", "x"), DAY, 401),
        ((DEMO_USER, "project-secret-1"), f"{DAY}&project_id={DEMO_PROJECT_ID}", 401),
        (None, DAY, 401),
    ],
)
def test_mixpanel_export_checks_either_of_mixpanels_auth_styles(mixpanel, auth, query, status):
    r = requests.get(f"{mixpanel.url}/api/2.0/export?{query}", auth=auth, timeout=5)
    assert r.status_code == status, r.text


def test_mixpanel_export_sends_the_keys_mixpanel_adds_and_numeric_session_ids(mixpanel):
    r = requests.get(f"{mixpanel.url}/api/2.0/export?{DAY}", auth=("project-secret-1", ""), timeout=5)
    lines = [orjson.loads(x) for x in r.content.splitlines()]
    props = [x["properties"] for x in lines if isinstance(x, dict) and isinstance(x.get("properties"), dict)]
    assert len(props) > 200
    assert all({"$insert_id", "mp_processing_time_ms", "$mp_api_endpoint", "time"} <= set(p) for p in props)
    assert any("$distinct_id_before_identity" in p for p in props)
    assert any(type(p.get("$session_id")) is int for p in props)  # whole-number sessions as numbers
    again = requests.get(f"{mixpanel.url}/api/2.0/export?{DAY}", auth=("project-secret-1", ""), timeout=5)
    assert again.content == r.content  # the same records, wire keys included, every time


def test_posthog_events_keeps_posthogs_exclusive_after_and_its_limits():
    data = DemoData(DemoConfig(events_per_hour=10, live=False))
    with DemoServer(data, api_key=DEMO_KEY, style="posthog-events") as s:
        at = next(g for g in data.events(datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 2, tzinfo=UTC)))
        t = datetime.fromtimestamp(at.sort_ms / 1000, tz=UTC)

        def ask(**q):
            url = f"{s.url}/api/projects/@current/events"
            return requests.get(url, params=q, headers={"Authorization": f"Bearer {DEMO_KEY}"}, timeout=5)

        first = ask(after=t.isoformat(), before=(t + timedelta(hours=1)).isoformat())
        early = ask(
            after=(t - timedelta(microseconds=1)).isoformat(), before=(t + timedelta(hours=1)).isoformat()
        )
        assert len(early.json()["results"]) == len(first.json()["results"]) + 1  # after is exclusive
        assert ask(after="2023-01-01T00:00:00Z", before="2024-01-01T00:00:00Z").status_code == 400  # a year
        assert ask(after="2024-05-01T00:00:00Z", offset="50100", limit="100").status_code == 400


def test_the_amplitude_export_is_filed_by_upload_hour_and_some_events_cross_midnight():
    """Amplitude's export names the *upload* hours: an event of 23:4x uploaded after midnight is in the
    next day's 00 file, with the keys Amplitude adds and a numeric session id."""
    import gzip
    import io
    import zipfile
    from datetime import datetime, timezone

    import orjson

    start = datetime(2025, 5, 1, 22, tzinfo=timezone.utc)
    data = DemoData(
        DemoConfig(start=start, events_per_hour=60, end=datetime(2025, 5, 2, 2, tzinfo=timezone.utc))
    )
    with DemoServer(data, api_key=DEMO_KEY, style="amplitude", api_user="u") as s:
        r = requests.get(
            f"{s.url}/api/2/export?start=20250502T00&end=20250502T00", auth=("u", DEMO_KEY), timeout=10
        )
    assert r.status_code == 200
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.namelist() == ["100/100_2025-05-02_0#0.json.gz"]
        lines = [orjson.loads(x) for x in gzip.decompress(zf.read(zf.namelist()[0])).splitlines()]
    uploads = [x["server_upload_time"] for x in lines if isinstance(x, dict)]
    assert all(u.startswith("2025-05-02 00:") for u in uploads)
    before = [
        x for x in lines if isinstance(x, dict) and str(x.get("event_time", "")).startswith("2025-05-01 23:")
    ]
    assert before and all(x["event_time"] >= "2025-05-01 23:40" for x in before)
    assert {"$insert_id", "uuid", "amplitude_id", "server_received_time"} <= set(before[0])
    assert all(isinstance(x["session_id"], int) for x in lines if isinstance(x, dict))
