"""A body that does not fit the configured paths is a configuration error: one request, the path and the
keys the body has named, no retry. A cursor or next link that is null, empty or absent from its object
still ends the data; one sent again ends it only with ``source.paginator.repeat: end``."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import yaml

from eventpipe.demo import styles
from eventpipe.demo.data import DemoConfig
from eventpipe.errors import ResponseShapeError, SettingsError, SourceError
from eventpipe.settings import ApiSettings
from hostile import Hostile
from support import API_KEY, ROOT, make_client, start_api

SINCE = datetime(2024, 5, 1, tzinfo=timezone.utc)
UNTIL = SINCE + timedelta(hours=6)
FAST = ApiSettings(backoff_initial_s=0.01, backoff_max_s=0.05, max_retries=5)
ENV = {"EVENTS_API_KEY": API_KEY, "EVENTS_TOKEN": API_KEY, "POSTHOG_API_KEY": API_KEY}


def item(n: int) -> dict:
    return {"user_id": f"u{n}", "event": "click", "timestamp": 1714557600 + n}


def fetch(url: str, **source) -> list:
    client = make_client(url, API_KEY, FAST, **source)
    return [r for page in client.pages(SINCE, UNTIL) for r in page.records()]


def serve(body: dict) -> Hostile:
    return Hostile(lambda h, q: h.send(orjson.dumps(body)))


MISMATCHES = {
    "records path": (
        {},
        {"results": [item(1)], "has_more": False},
        ["has no list at the records path 'items'", "source.records", "top-level keys: results, has_more"],
    ),
    "has_more path": (
        {},
        {"items": [item(1)], "more": False},
        [
            "has no boolean at the has_more path 'has_more'",
            "source.paginator.has_more_path",
            "top-level keys: items, more",
        ],
    ),
    "total path, page_number": (
        {"paginator": {"type": "page_number", "has_more_path": "", "total_path": "meta.total_pages"}},
        {"items": [item(1)], "meta": {"page": 1, "pages": 3}},
        [
            "has no whole number at the total path 'meta.total_pages'",
            "source.paginator.total_path",
            "keys under 'meta': page, pages",
        ],
    ),
    "total path, offset": (
        {"paginator": {"type": "offset", "total_path": "total"}, "records": "data"},
        {"data": [item(1)], "count": 1},
        ["total path 'total'", "top-level keys: data, count"],
    ),
    "total path of the wrong type": (
        {"paginator": {"type": "offset", "total_path": "total"}, "records": "data"},
        {"data": [item(1)], "total": "250"},
        ["holds string '250', not a whole number, at the total path 'total'"],
    ),
    "cursor path whose object is missing": (
        {
            "paginator": {"type": "cursor", "cursor_path": "response_metadata.next_cursor"},
            "records": "events",
        },
        {"events": [item(1)], "metadata": {"next": "c2"}},
        [
            "cursor path 'response_metadata.next_cursor'",
            "source.paginator.cursor_path",
            "keys: events, metadata",
        ],
    ),
    "cursor of the wrong type": (
        {"paginator": {"type": "cursor"}},
        {"items": [item(1)], "next_cursor": True},
        ["holds boolean True, not a string or number, at the cursor path 'next_cursor'"],
    ),
    "next-link path whose object is missing": (
        {"paginator": {"type": "json_link", "next_url_path": "links.next"}, "records": "results"},
        {"results": [item(1)], "paging": {"next": "/events?page=2"}},
        ["next-link path 'links.next'", "source.paginator.next_url_path", "top-level keys: results, paging"],
    ),
    "next link of the wrong type": (
        {"paginator": {"type": "json_link"}, "records": "results"},
        {"results": [item(1)], "next": {"href": "/events?page=2"}},
        ["holds object {…}, not a string, at the next-link path 'next'"],
    ),
}


@pytest.mark.parametrize("case", list(MISMATCHES))
def test_a_body_the_paths_do_not_fit_fails_after_one_request_naming_the_path(case):
    source, body, must_mention = MISMATCHES[case]
    with serve(body) as api, pytest.raises(ResponseShapeError) as failed:
        fetch(api.url, **source)
    assert len(api.seen) == 1
    message = str(failed.value)
    for text in must_mention:
        assert text in message
    assert "without retrying" in message and "max_retries" not in message


def test_a_streamed_body_without_the_records_list_names_its_keys_too():
    """Past 8 MB the body is spooled and read record by record: the same one-request verdict."""
    body = b'{"results": [' + b",".join(orjson.dumps(item(i)) for i in range(150_000)) + b'], "next": null}'
    assert len(body) > 8 * 2**20
    with Hostile(lambda h, q: h.send(body)) as api, pytest.raises(ResponseShapeError) as failed:
        fetch(api.url)
    assert len(api.seen) == 1
    assert "records path 'items'" in str(failed.value) and "top-level keys: results, next" in str(
        failed.value
    )


def test_a_streamed_page_whose_nested_cursor_is_null_is_the_last():
    body = orjson.dumps(
        {"events": [item(i) for i in range(150_000)], "response_metadata": {"next_cursor": None, "x": 1}}
    )
    assert len(body) > 8 * 2**20
    with Hostile(lambda h, q: h.send(body)) as api:
        records = fetch(
            api.url,
            paginator={"type": "cursor", "cursor_path": "response_metadata.next_cursor"},
            records="events",
        )
    assert len(records) == 150_000 and len(api.seen) == 1


ENDS = {
    "cursor null": ({"type": "cursor", "cursor_path": "meta.next"}, {"meta": {"next": None}}),
    "cursor empty": ({"type": "cursor", "cursor_path": "meta.next"}, {"meta": {"next": ""}}),
    "cursor absent from its object": ({"type": "cursor", "cursor_path": "meta.next"}, {"meta": {}}),
    "cursor absent at the top": ({"type": "cursor"}, {}),
    "next link null": ({"type": "json_link"}, {"next": None}),
    "next link absent at the top": ({"type": "json_link"}, {}),
    "next link absent from its object": ({"type": "json_link", "next_url_path": "links.next"}, {"links": {}}),
}


@pytest.mark.parametrize("case", list(ENDS))
def test_a_cursor_or_next_link_that_is_null_empty_or_absent_ends_the_data(case):
    paginator, rest = ENDS[case]
    with serve({"items": [item(1), item(2)], **rest}) as api:
        records = fetch(api.url, paginator=paginator)
    assert records == [item(1), item(2)] and len(api.seen) == 1


@pytest.mark.parametrize(
    "paginator",
    [{"type": "cursor", "cursor_path": "meta.next"}, {"type": "json_link", "next_url_path": "links.next"}],
)
def test_an_empty_page_without_the_links_object_ends_the_data(paginator):
    """Some APIs send a page without records bare (``{"data": []}``, no paging object)."""

    def answer(h, q):
        h.send(
            orjson.dumps(
                {"items": []}
                if len(api.seen) > 1
                else {"items": [item(1)], "meta": {"next": "c2"}, "links": {"next": "/analytics?cursor=c2"}}
            )
        )

    with Hostile(answer) as api:
        records = fetch(api.url, paginator=paginator)
    assert records == [item(1)] and len(api.seen) == 2


@pytest.mark.parametrize(
    "paginator, link",
    [({"type": "cursor"}, {"next_cursor": "c1"}), ({"type": "json_link"}, {"next": "/analytics?cursor=c1"})],
)
def test_repeat_end_reads_a_cursor_or_next_link_sent_again_as_the_end(paginator, link):
    def answer(h, q):  # page 1 names c1, and so does page 2: an API whose last page repeats its link
        h.send(orjson.dumps({"items": [item(len(api.seen))], **link}))

    with Hostile(answer) as api:
        with pytest.raises(SourceError, match="same cursor or next link again.*repeat: end"):
            fetch(api.url, paginator=paginator)
        api.seen.clear()
        records = fetch(api.url, paginator={**paginator, "repeat": "end"})
    assert records == [item(1), item(2)] and len(api.seen) == 2


def test_repeat_takes_fail_or_end():
    with pytest.raises(SettingsError, match="source.paginator.repeat 'stop': use fail or end"):
        make_client("http://127.0.0.1:9", API_KEY, FAST, paginator={"type": "cursor", "repeat": "stop"})


def _preset(style: str) -> dict:
    doc = yaml.safe_load((ROOT / "params" / "sources" / f"{styles.PRESETS[style]}.yaml").read_text())
    return {"source": doc["source"], "endpoint": doc["api"]["endpoint"]}


@pytest.mark.parametrize(
    "style, change, named",
    [
        ("contract", {"records": "data"}, "records path 'data'"),
        ("contract", {"paginator": {"type": "page_number", "has_more_path": "more"}}, "has_more path 'more'"),
        ("offset", {"paginator": {"type": "offset", "total_path": "count"}}, "total path 'count'"),
        ("cursor", {"paginator": {"type": "cursor", "cursor_path": "metadata.next_cursor"}}, "cursor path"),
        (
            "posthog-events",  # one window, not the preset's hourly slices (each would be asked at once)
            {
                "paginator": {"type": "json_link", "next_url_path": "links.next"},
                "window": {"since_param": "after", "until_param": "before", "start": "exclusive"},
            },
            "next-link path",
        ),
    ],
)
def test_each_preset_wire_format_with_a_wrong_path_fails_after_one_request(style, change, named):
    """The demo API speaking each wire format, its request log counting what the client asked."""
    api = start_api(DemoConfig(start=SINCE, events_per_hour=60), style=style)
    try:
        p = _preset(style)
        client = make_client(
            api.url,
            API_KEY,
            ApiSettings(endpoint=p["endpoint"], backoff_initial_s=0.01, backoff_max_s=0.05),
            env=ENV,
            **{**p["source"], **change},
        )
        with pytest.raises(ResponseShapeError, match=named):
            list(client.pages(SINCE, UNTIL))
        assert api.server.requests == 1
        while len(api.server.request_log) < api.server.requests:  # logged once the answer has gone out
            time.sleep(0.01)
        assert [r.status for r in api.server.request_log] == [200]
    finally:
        api.server.stop()


def test_a_streamed_page_tells_an_absent_cursor_object_from_an_absent_cursor():
    events = [item(i) for i in range(150_000)]
    cursor = {"type": "cursor", "cursor_path": "response_metadata.next_cursor"}
    with serve({"events": events, "response_metadata": {"x": 1}}) as api:
        assert len(fetch(api.url, paginator=cursor, records="events")) == 150_000  # absent from its object
    with serve({"events": events, "metadata": {"next_cursor": "c2"}}) as api:
        with pytest.raises(ResponseShapeError, match="cursor path .*top-level keys: events, metadata"):
            fetch(api.url, paginator=cursor, records="events")
    assert len(api.seen) == 1


def _config(auth: dict, env: dict):
    from eventpipe.settings import load_settings
    from eventpipe.source.config import SourceConfig

    settings = load_settings(None, [f"source.auth={orjson.dumps(auth).decode()}"], env=env)
    return SourceConfig.from_settings(settings, env).auth


MIXPANEL_AUTH = {
    "type": "basic",
    "username_env": "MP_USER",
    "password_env": "MP_SECRET",
    "query_env": {"project_id": "MP_PROJECT"},
}


def test_auth_query_env_sends_a_parameter_only_when_its_variable_is_set():
    account = _config(MIXPANEL_AUTH, {"MP_USER": "sa.x", "MP_SECRET": "secret-123456", "MP_PROJECT": "42"})
    assert account.basic == ("sa.x", "secret-123456") and account.query == {"project_id": "42"}
    secret = _config(MIXPANEL_AUTH, {"MP_USER": "project-secret-1"})  # a key as the user name
    assert secret.basic == ("project-secret-1", "") and secret.query == {}


@pytest.mark.parametrize("query_env", [["project_id"], {"project_id": ""}, {"project_id": 7}])
def test_a_bad_auth_query_env_is_a_settings_error(query_env):
    with pytest.raises(SettingsError, match="source.auth.query_env"):
        _config({**MIXPANEL_AUTH, "query_env": query_env}, {"MP_USER": "u"})
