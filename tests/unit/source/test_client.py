"""The source client against the demo API on loopback: pagination, retries, fatal answers."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from eventpipe.demo.data import DemoConfig
from eventpipe.demo.faults import FAULT_KINDS, FaultPlan
from eventpipe.errors import RetriesExhausted, SourceError
from eventpipe.settings import ApiSettings
from eventpipe.source.retry import parse_retry_after
from support import API_KEY, make_client, start_api

SINCE = datetime(2024, 5, 1, tzinfo=timezone.utc)
UNTIL = datetime(2024, 5, 1, 6, tzinfo=timezone.utc)


def fetch_all(api, per_page=50, key=API_KEY, **api_kw):
    settings = ApiSettings(per_page=per_page, backoff_initial_s=0.01, backoff_max_s=0.2, **api_kw)
    client = make_client(api.url, key, settings)
    items = [item for page in client.pages(SINCE, UNTIL) for item in page.records()]
    return client, items


@pytest.fixture
def plain_api():
    a = start_api(DemoConfig(events_per_hour=60))
    yield a
    a.server.stop()


@pytest.mark.parametrize("per_page", [1, 7, 100, 10_000])
def test_pagination_returns_every_item_once_in_api_order(plain_api, per_page):
    client, items = fetch_all(plain_api, per_page=per_page)
    expected = [g.body for g in plain_api.data.events(SINCE, UNTIL)]
    import orjson

    assert [orjson.dumps(i) for i in items] == expected
    assert client.stats.pages == max(1, -(-len(expected) // per_page))
    assert (
        client.stats.attempts == client.stats.pages + client.stats.ahead_unused and client.stats.retries == 0
    )


def test_empty_window_is_one_empty_page(plain_api):
    settings = ApiSettings(per_page=50)
    client = make_client(plain_api.url, API_KEY, settings)
    early = datetime(2023, 1, 1, tzinfo=timezone.utc)
    pages = list(client.pages(early, datetime(2023, 1, 2, tzinfo=timezone.utc)))
    assert [p.n for p in pages] == [0]


# not errors to retry: "repeat" serves the previous page's items again, as offset paging does on inserts, and
# a body without the configured paths is a configuration mismatch that fails at once (test_config_errors.py)
NOT_RETRIED = ("repeat", "missing_items", "missing_has_more")


@pytest.mark.parametrize("fault", [k for k in FAULT_KINDS if k not in NOT_RETRIED])
def test_each_retryable_fault_is_recovered(fault):
    faults = FaultPlan((fault,), every=2, retry_after="0", slow_s=1.0)
    api = start_api(DemoConfig(events_per_hour=60), faults=faults)
    try:
        client, items = fetch_all(api, per_page=50, timeout_s=0.5)
    finally:
        api.server.stop()
    assert len(items) == len(list(api.data.events(SINCE, UNTIL)))
    assert client.stats.retries >= 1
    assert client.stats.attempts == client.stats.pages + client.stats.retries + client.stats.ahead_unused
    assert api.server.faults_served


def test_retry_after_seconds_is_honoured():
    api = start_api(
        DemoConfig(events_per_hour=10), faults=FaultPlan(("429",), every=1, retry_after="1", limit=1)
    )
    try:
        started = time.monotonic()
        client, _ = fetch_all(api, per_page=100)
    finally:
        api.server.stop()
    assert time.monotonic() - started >= 0.19  # capped at api.backoff_max_s=0.2 in this test
    assert client.stats.faults["429"] == 1


def test_retry_after_parses_seconds_and_http_dates():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after(None) is None
    from email.utils import formatdate

    assert 0 <= parse_retry_after(formatdate(time.time() + 5, usegmt=True)) <= 5.1
    assert parse_retry_after("garbage") is None


def test_retries_stop_at_max_retries_with_a_clear_error():
    api = start_api(DemoConfig(events_per_hour=10), faults=FaultPlan(("503",), every=1))
    try:
        with pytest.raises(RetriesExhausted) as err:
            fetch_all(api, max_retries=3)
    finally:
        api.server.stop()
    assert err.value.attempts == 4
    assert "page 1" in str(err.value) and "503" in str(err.value)
    assert API_KEY not in str(err.value)


def test_retries_stop_at_the_time_budget():
    api = start_api(DemoConfig(events_per_hour=10), faults=FaultPlan(("503",), every=1))
    try:
        started = time.monotonic()
        with pytest.raises(RetriesExhausted):
            fetch_all(api, max_retries=1000, retry_budget_s=0.5)
    finally:
        api.server.stop()
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "case,status", [("wrong_key", 401), ("revoked_key", 403), ("bad_endpoint", 404), ("bad_query", 400)]
)
def test_fatal_statuses_fail_at_once_without_the_key(case, status, plain_api):
    key = API_KEY
    kw = {}
    if case == "wrong_key":
        key = "sk-wrong-SECRET-value"
    elif case == "revoked_key":
        key = "sk-revoked-SECRET-value"
        plain_api.server.revoked_keys.add(key)
    elif case == "bad_endpoint":
        kw["endpoint"] = "/nope"
    settings = ApiSettings(per_page=0 if case == "bad_query" else 50, **kw)
    client = make_client(plain_api.url, key, settings)
    with pytest.raises(SourceError) as err:
        list(client.pages(SINCE, UNTIL))
    assert err.value.status == status
    assert client.stats.attempts == 1
    assert key not in str(err.value) and API_KEY not in str(err.value)
    if status in (401, 403):
        assert "API_KEY" in str(err.value)


def test_requests_without_a_key_are_rejected(plain_api):
    import requests

    r = requests.get(plain_api.url + "/analytics", timeout=5)
    assert r.status_code == 401


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("max_retries, said", [(0, "after 1 attempt "), (2, "after 3 attempts ")])
def test_a_refused_connection_is_said_as_such_with_its_attempts_in_words(max_retries, said):
    port = _closed_port()
    settings = ApiSettings(per_page=10, backoff_initial_s=0.01, backoff_max_s=0.02, max_retries=max_retries)
    client = make_client(f"http://127.0.0.1:{port}", API_KEY, settings)
    with pytest.raises(RetriesExhausted) as err:
        list(client.pages(SINCE, UNTIL))
    message = str(err.value)
    assert f"connection refused by 127.0.0.1:{port} — is the API running?" in message
    assert said in message and "dropped" not in message
    assert err.value.attempts == max_retries + 1


def test_a_connection_failure_without_a_clearer_cause_stays_dropped():
    import requests

    from eventpipe.source.client import connection_failure

    assert connection_failure(requests.ConnectionError("eof"), "http://h:1/x") is None
    refused = requests.ConnectionError(OSError("wrapped"))
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert connection_failure(refused, "https://api.example.com/v1") == (
        "connection refused by api.example.com:443 — is the API running? check api.base_url"
    )
