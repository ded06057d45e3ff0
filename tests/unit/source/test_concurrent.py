"""api.concurrency against real HTTP: the same pages in the same order, one pause for all on Retry-After,
one request budget for all, a failure that stops every worker, and memory bounded by spilling."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import yaml

from eventpipe.demo import styles
from eventpipe.demo.data import DemoConfig
from eventpipe.demo.faults import FaultPlan
from eventpipe.demo.server import DEMO_USER
from eventpipe.errors import RetriesExhausted
from eventpipe.settings import ApiSettings
from eventpipe.source.concurrent import MEMORY_PAGES, Gate, SliceBuffer
from hostile import Hostile
from support import API_KEY, ROOT, make_client, start_api

SINCE = datetime(2024, 5, 1, tzinfo=timezone.utc)
UNTIL = SINCE + timedelta(hours=6)
FAST = dict(backoff_initial_s=0.01, backoff_max_s=0.05)
ENV = {
    "EVENTS_API_KEY": API_KEY,
    "EVENTS_TOKEN": API_KEY,
    "MIXPANEL_USER": DEMO_USER,
    "MIXPANEL_SECRET": API_KEY,
    "POSTHOG_API_KEY": API_KEY,
}


def preset(style: str) -> dict:
    """The ``source:`` section and endpoint of the preset that reads ``style`` (``params/sources/``)."""
    doc = yaml.safe_load((ROOT / "params" / "sources" / f"{styles.PRESETS[style]}.yaml").read_text())
    return {"source": doc["source"], "endpoint": doc["api"]["endpoint"]}


def pages(url: str, concurrency: int, step: str = "", until: datetime = UNTIL, **api) -> list[tuple]:
    """Every page of [SINCE, until) as (number, chunks, counts), ``concurrency`` requests at once."""
    source = dict(api.pop("source", {}))
    if step:
        source["window"] = {**source.get("window", {}), "step": step}
    settings = ApiSettings(**{**FAST, "per_page": 13, "concurrency": concurrency, **api})
    client = make_client(url, API_KEY, settings, env=ENV, **source)
    return [(p.number, p.chunks, p.counts) for p in client.pages(SINCE, until, chunk_rows=10)]


@pytest.fixture
def dup_api():
    """Copies of an event arrive later in the same hour: with 15-minute slices they land in other slices."""
    a = start_api(DemoConfig(start=SINCE, events_per_hour=90, dirty_share=0.05, duplicate_share=0.3))
    yield a
    a.server.stop()


@pytest.mark.parametrize("step", ["", "15m", "1h"])
def test_every_concurrency_hands_on_the_same_pages_in_the_same_order(dup_api, step):
    expected = [g.body for g in dup_api.data.events(SINCE, UNTIL)]
    one = pages(dup_api.url, 1, step)
    assert [r for _, chunks, _ in one for c in chunks for r in orjson.loads(c)] == [
        orjson.loads(b) for b in expected
    ]
    for c in (2, 4, 8):
        assert pages(dup_api.url, c, step) == one  # numbers, chunks and counts, byte for byte


@pytest.mark.parametrize("style", ["offset", "cursor", "posthog-events"])
@pytest.mark.parametrize("step", ["", "1h"])
def test_paginators_that_can_or_cannot_predict_keep_the_order_too(style, step):
    a = start_api(DemoConfig(start=SINCE, events_per_hour=60, dirty_share=0.05), style=style)
    try:
        src = preset(style)
        src["source"]["params"] = {**src["source"].get("params", {}), "limit": 13}
        one = pages(a.url, 1, step, **src)
        assert sum(sum(c) for _, _, c in one) == len(list(a.data.events(SINCE, UNTIL)))
        assert len(one) > 6
        assert pages(a.url, 8, step, **src) == one
    finally:
        a.server.stop()


def test_faults_under_concurrency_leave_the_pages_identical(dup_api):
    one = pages(dup_api.url, 1, "15m")
    dup_api.server.faults = FaultPlan(("429", "503", "drop", "truncate", "500"), every=3, retry_after="0")
    assert pages(dup_api.url, 8, "15m") == one
    assert pages(dup_api.url, 4, "") == pages(dup_api.url, 1, "")
    assert {"429", "503", "drop", "truncate"} <= set(dup_api.server.faults_served)


def test_a_retry_after_pauses_every_worker_not_just_the_one_that_got_it():
    a = start_api(DemoConfig(start=SINCE, events_per_hour=300))
    try:
        one = pages(a.url, 1, "30m", per_page=5)
        a.server.request_log.clear()
        a.server.latency_s = 0.05  # 360 pages: ~2.3 s of work for 8 workers, so they are busy throughout
        a.server.faults = FaultPlan(("429",), every=40, retry_after="2", limit=1)
        assert pages(a.url, 8, "30m", per_page=5, backoff_max_s=5.0) == one  # Retry-After is capped there
        log = sorted(a.server.request_log, key=lambda r: r.arrived)
        told = [r for r in log if r.status == 429]
        assert len(told) == 1
        t = told[0].answered
        # requests sent before the 429 reached the client may still arrive just after it was answered
        during = [r for r in log if t + 0.1 < r.arrived < t + 1.95]
        assert during == [], f"{len(during)} requests reached the API during the 2 s it asked for"
        assert sum(1 for r in log if r.arrived >= t + 1.95) > 100  # and the run went on after it
    finally:
        a.server.stop()


def test_max_requests_per_s_is_one_budget_for_all_workers():
    a = start_api(DemoConfig(start=SINCE, events_per_hour=60))
    try:
        pages(a.url, 8, "15m", max_requests_per_s=40.0)
        arrivals = sorted(r.arrived for r in a.server.request_log)
        assert len(arrivals) >= 24
        for i, t in enumerate(arrivals):  # at most 40 (and one for jitter) in any second
            assert sum(1 for u in arrivals[i:] if u < t + 1.0) <= 41
        assert arrivals[-1] - arrivals[0] >= (len(arrivals) - 1) / 40 * 0.9
    finally:
        a.server.stop()


def test_a_page_that_fails_for_good_stops_every_worker_at_once():
    served = []
    lock = threading.Lock()

    def answer(h, q):
        with lock:
            served.append(time.monotonic())
        if q["since"].startswith("2024-05-01T03"):  # one slice is down for good
            return h.send(b'{"error": "down"}', 503)
        time.sleep(0.2)  # the others are slow and long: 100 pages each, 20 s one after another
        n = int(q["page"])
        h.send(orjson.dumps({"items": [{"user_id": f"u{n}", "event": "click"}], "has_more": n < 100}))

    with Hostile(answer) as api:
        started = time.monotonic()
        with pytest.raises(RetriesExhausted, match="503"):
            pages(api.url, 8, "1h", max_retries=2)
        failed_after = time.monotonic() - started
        count = len(served)
        time.sleep(0.6)
        assert len(served) == count  # nothing asked after the failure
    # the failed slice is the fourth: the run failed without waiting for the first three to end
    assert failed_after < 3


def test_a_slice_read_ahead_keeps_only_a_few_pages_in_memory(tmp_path):
    cond = threading.Condition()
    buffer = SliceBuffer(cond, [], tmp_path)
    sent = [([f"[{i}]".encode()], [1]) for i in range(50)]
    for chunks, counts in sent:
        buffer.put(chunks, counts)
        assert buffer._in_memory <= MEMORY_PAGES
    buffer.finish()
    assert list(buffer.drain()) == sent
    buffer.close()
    assert list(tmp_path.iterdir()) == []  # the spill file is unlinked from the start


def test_a_stopped_gate_refuses_requests_and_cuts_backoffs():
    gate = Gate()
    gate.wait()
    gate.stop()
    with pytest.raises(Exception, match="stopping"):
        gate.wait()
    started = time.monotonic()
    with pytest.raises(Exception, match="stopping"):
        gate.sleep(30)
    assert time.monotonic() - started < 1


def test_concurrency_is_validated_before_anything_is_fetched():
    from eventpipe.errors import SettingsError
    from eventpipe.settings import load_settings

    for bad in ("0", "65", "-1"):
        with pytest.raises(SettingsError, match="api.concurrency"):
            load_settings(
                None, [f"api.concurrency={bad}"], env={"API_BASE_URL": "http://x", "API_KEY": "k-123456"}
            )
    with pytest.raises(SettingsError, match="api.max_requests_per_s"):
        load_settings(
            None, ["api.max_requests_per_s=-1"], env={"API_BASE_URL": "http://x", "API_KEY": "k-123456"}
        )


def test_daily_exports_are_fetched_a_day_per_worker_in_order():
    a = start_api(DemoConfig(start=SINCE, events_per_hour=20), style="mixpanel")
    try:
        src, until = preset("mixpanel"), SINCE + timedelta(days=5)
        one = pages(a.url, 1, until=until, **src)
        assert len(one) == 5
        assert pages(a.url, 4, until=until, **src) == one
    finally:
        a.server.stop()


@pytest.mark.parametrize("concurrency", [1, 8])
def test_pages_fetched_ahead_on_a_wrong_guess_are_dropped_and_asked_again(concurrency):
    """The API caps pages at 10 records though 13 were asked: the offsets fetched ahead (13, 26...) are not
    where the answers lead (10, 20...), so they are dropped and the right ones asked."""

    def answer(h, q):
        offset = int(q["offset"])
        items = [{"user_id": f"u{i}", "event": "click"} for i in range(offset, min(offset + 10, 57))]
        h.send(orjson.dumps({"data": items, "total": 57}))

    with Hostile(answer) as api:
        src = {"paginator": {"type": "offset", "limit": 13, "total_path": "total"}, "records": "data"}
        got = pages(api.url, concurrency, source=src)
        asked = sorted({int(path.split("offset=")[1].split("&")[0]) for path, _ in api.seen})
    users = [r["user_id"] for _, chunks, _ in got for c in chunks for r in orjson.loads(c)]
    assert users == [f"u{i}" for i in range(57)]
    assert {0, 10, 20, 30, 40, 50} <= set(asked)
