"""The source's guards against APIs that loop, lie, bomb, trickle or echo secrets (real HTTP, hostile server)."""

from __future__ import annotations

import base64
import gzip
import time
from datetime import datetime, timezone

import orjson
import pyarrow.parquet as pq
import pytest

from eventpipe.errors import RetriesExhausted, SettingsError, SourceError
from eventpipe.rundir import UNPARSED
from eventpipe.settings import ApiSettings, load_settings
from eventpipe.source import formats
from eventpipe.source.extract import extract_window
from hostile import Hostile, contract_page, deep_record, nested_too_deep
from support import API_KEY, make_client

SINCE = datetime(2024, 5, 1, tzinfo=timezone.utc)
UNTIL = datetime(2024, 5, 2, tzinfo=timezone.utc)
FAST = dict(backoff_initial_s=0.01, backoff_max_s=0.05, max_pages=50)


def item(n: int) -> dict:
    return {"user_id": f"u{n}", "event": "click", "timestamp": 1714557600 + n}


def fetch(url: str, api: ApiSettings | None = None, **source) -> list:
    client = make_client(url, API_KEY, api or ApiSettings(**FAST), **source)
    return [r for page in client.pages(SINCE, UNTIL) for r in page.records()]


def test_repeating_cursor_stops_with_a_clear_error():
    calls = []

    def answer(h, q):  # new records every time, but always the same cursor: dlt issue 3358
        calls.append(1)
        h.send(orjson.dumps({"items": [item(len(calls))], "next_cursor": "c1"}))

    with Hostile(answer) as api, pytest.raises(SourceError, match="same cursor or next link"):
        fetch(api.url, paginator={"type": "cursor"})
    assert len(calls) == 2


def test_repeating_next_link_stops_with_a_clear_error():
    calls = []

    def answer(h, q):
        calls.append(1)
        h.send(orjson.dumps({"items": [item(len(calls))], "next": "/analytics?page=2"}))

    with Hostile(answer) as api, pytest.raises(SourceError, match="same cursor or next link"):
        fetch(api.url, paginator={"type": "json_link"})
    assert len(calls) == 2


@pytest.mark.parametrize("large", [False, True], ids=["bytes", "sha256"])
@pytest.mark.parametrize("concurrency", [1, 4])
def test_has_more_forever_with_the_same_page_stops_with_a_clear_error(concurrency, large, monkeypatch):
    if large:  # every page counts as large: told from the page before by its SHA-256, not held
        monkeypatch.setattr(formats, "SAME_PAGE_BYTES", 0)
    with Hostile(lambda h, q: h.send(orjson.dumps({"items": [item(1)], "has_more": True}))) as api:
        with pytest.raises(SourceError, match="exactly the records of the page before"):
            fetch(api.url, ApiSettings(**FAST, concurrency=concurrency))
        # sequentially the second page tells; with pages fetched ahead, at most concurrency - 1 more were asked
        assert 2 <= len(api.seen) <= 2 + concurrency - 1


@pytest.mark.parametrize("concurrency", [1, 4])
def test_max_pages_is_the_backstop_of_an_api_that_never_ends(concurrency):
    def answer(h, q):
        h.send(orjson.dumps({"items": [item(int(q["page"]))], "has_more": True}))

    with Hostile(answer) as api, pytest.raises(SourceError, match="api.max_pages=5"):
        fetch(api.url, ApiSettings(**{**FAST, "max_pages": 5, "concurrency": concurrency}))
    assert len(api.seen) == 5  # pages are never fetched ahead past the backstop


@pytest.mark.parametrize("paginator", ["json_link", "header_link"])
def test_next_link_to_another_port_is_refused_and_the_key_never_sent(paginator):
    with Hostile(lambda h, q: h.send(b"[]")) as other:
        elsewhere = f"{other.url}/analytics?page=2"

        def answer(h, q):
            h.send(
                orjson.dumps({"items": [item(1)], "next": elsewhere}),
                headers={"Link": f'<{elsewhere}>; rel="next"'},
            )

        with Hostile(answer) as api, pytest.raises(SourceError, match="refused to follow a next link"):
            fetch(api.url, paginator={"type": paginator})
        assert other.seen == []


@pytest.mark.parametrize(
    "paginator",
    [
        {"type": "page_number"},
        {"type": "offset", "limit": 2},
        {"type": "cursor"},
        {"type": "json_link"},
        {"type": "header_link"},
    ],
)
def test_every_paginator_retries_5xx_and_reads_every_page(paginator):
    """Three pages of two records; every page's first attempt answers 503 (then the right body)."""
    attempts: dict[str, int] = {}

    def answer(h, q):
        n = int(q.get("page") or q.get("cursor") or int(q.get("offset", 0)) // 2 + 1)
        attempts[str(n)] = attempts.get(str(n), 0) + 1
        if attempts[str(n)] == 1:
            return h.send(b'{"error": "busy"}', 503)
        if n > 3:  # past the end: an empty page (what ends offset paging)
            return h.send(b'{"items": []}')
        nxt = f"/analytics?page={n + 1}" if n < 3 else None
        body = {
            "items": [item(2 * n), item(2 * n + 1)],
            "has_more": n < 3,
            "next_cursor": str(n + 1) if n < 3 else None,
        }
        h.send(orjson.dumps({**body, "next": nxt}), headers={"Link": f'<{nxt}>; rel="next"'} if nxt else {})

    with Hostile(answer) as api:
        records = fetch(api.url, paginator=paginator)
    assert [r["user_id"] for r in records] == [f"u{i}" for i in range(2, 8)]
    # past the end (page 4, and pages fetched ahead beyond it) the answers are empty or unread
    assert {k: v for k, v in attempts.items() if int(k) <= 3} == {"1": 2, "2": 2, "3": 2}


def test_fatal_answers_are_not_retried_for_any_paginator():
    with Hostile(lambda h, q: h.send(b'{"error": "nope"}', 404)) as api:
        for kind in ("page_number", "cursor", "json_link", "header_link", "single_page", "offset"):
            with pytest.raises(SourceError, match="HTTP 404"):
                fetch(api.url, paginator={"type": kind})
        assert len(api.seen) == 6


def test_an_error_body_that_echoes_the_credentials_is_redacted():
    def answer(h, q):
        h.send(f"bad request: you sent {h.headers.get('Authorization')} and key={API_KEY}".encode(), 400)

    with Hostile(answer) as api:
        with pytest.raises(SourceError) as bearer:
            fetch(api.url)
        env = {"API_USER": "someone", "API_KEY": API_KEY}
        client = make_client(api.url, API_KEY, ApiSettings(**FAST), env=env, auth={"type": "basic"})
        with pytest.raises(SourceError) as basic:
            list(client.pages(SINCE, UNTIL))
    for e in (bearer.value, basic.value):
        assert "HTTP 400" in str(e) and "***" in str(e)
        assert API_KEY not in str(e) and base64.b64encode(f"someone:{API_KEY}".encode()).decode() not in str(
            e
        )


def test_credentials_in_the_base_url_are_refused_and_not_shown():
    with pytest.raises(SettingsError, match="carries credentials") as e:
        load_settings(None, [], env={"API_BASE_URL": "http://user:hunter2pass@127.0.0.1:9/"})
    assert "hunter2pass" not in str(e.value)


# -- issue 14: memory and stalls --------------------------------------------------------------------


def test_a_gzip_bomb_fails_the_page_past_max_decompressed_mb():
    bomb = gzip.compress(b'{"items": [], "has_more": false, "pad": "' + b"x" * (3 * 2**20) + b'"}')
    assert len(bomb) < 10_000
    with Hostile(lambda h, q: h.send(bomb, headers={"Content-Encoding": "gzip"})) as api:
        with pytest.raises(SourceError, match="inflates past 1 MB"):
            fetch(api.url, ApiSettings(**FAST, max_decompressed_mb=1))
        assert len(api.seen) == 1  # a data error: not retried


def test_a_body_larger_than_max_response_mb_fails_the_page():
    body = b'{"items": [], "has_more": false, "pad": "' + b"x" * (3 * 2**20) + b'"}'
    with Hostile(lambda h, q: h.send(body)) as api, pytest.raises(SourceError, match="larger than 1 MB"):
        fetch(api.url, ApiSettings(**FAST, max_response_mb=1))


def _fails_within_timeout_s(answer) -> None:
    """A 1.5 s ``api.timeout_s`` stops a request to a server answering this way, well before 3.5 s."""
    with Hostile(answer) as api:
        started = time.monotonic()
        with pytest.raises(RetriesExhausted, match="not complete within api.timeout_s"):
            fetch(api.url, ApiSettings(**FAST, timeout_s=1.5, max_retries=0))
        assert time.monotonic() - started < 3.5


def _trickle(h, data: bytes) -> None:
    for b in data:
        h.wfile.write(bytes([b]))
        h.wfile.flush()
        time.sleep(0.25)


def test_a_server_trickling_one_byte_a_second_fails_within_timeout_s():
    def answer(h, q):
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        _trickle(h, b'{"items": [' + b" " * 900)

    _fails_within_timeout_s(answer)


def test_a_record_nested_too_deep_is_kept_as_unparsed_and_the_rest_of_the_page_loads():
    deep = deep_record("u0", 1714557600)
    body = contract_page(item(1), deep, item(2))
    with Hostile(lambda h, q: h.send(body)) as api:
        records = fetch(api.url)
    assert [r.get("user_id") for r in records] == ["u1", None, "u2"]
    assert records[1][UNPARSED] == deep.decode() and "nested deeper" in records[1]["$eventpipe.reason"]


def test_a_deep_record_in_json_lines_is_kept_as_unparsed():
    deep = nested_too_deep()
    body = orjson.dumps(item(1)) + b"\n" + deep + b"\n" + orjson.dumps(item(2)) + b"\n"
    with Hostile(lambda h, q: h.send(body)) as api:
        records = fetch(api.url, format="jsonl", records="$", paginator={"type": "single_page"})
    assert records[0] == item(1) and records[2] == item(2) and records[1][UNPARSED] == deep.decode()


JSONL = b"".join(orjson.dumps(item(i)) + b"\n" for i in range(500))


@pytest.mark.parametrize(
    "cut,encoding",
    [
        (gzip.compress(JSONL, mtime=0)[:1000], "gzip"),  # a gzip stream that stops early
        (gzip.compress(JSONL, mtime=0)[:-4], "gzip"),  # every line, but not the stream's end
        (JSONL[: JSONL.index(b"\n", 3000) - 5], ""),  # a last line that stops mid-record
    ],
    ids=["gzip-half", "gzip-trailer", "last-line"],
)
def test_an_export_cut_short_is_asked_again_never_read_as_fewer_records(cut, encoding):
    """An honest Content-Length for a body that ends early: every record of it parses but the last."""
    whole = gzip.compress(JSONL, mtime=0) if encoding else JSONL
    headers = {"Content-Encoding": encoding} if encoding else {}

    def answer(h, q):
        h.send(cut if len(api.seen) == 1 else whole, headers=headers)

    with Hostile(answer) as api:
        records = fetch(api.url, format="jsonl", records="$", paginator={"type": "single_page"})
    assert records == [item(i) for i in range(500)] and len(api.seen) == 2


def test_json_lines_may_end_without_a_newline_and_a_broken_line_within_is_a_dead_letter():
    body = orjson.dumps(item(1)) + b"\n{not json\n" + orjson.dumps(item(2))
    with Hostile(lambda h, q: h.send(body)) as api:
        records = fetch(api.url, format="jsonl", records="$", paginator={"type": "single_page"})
    assert records[0] == item(1) and records[1][UNPARSED] == "{not json" and records[2] == item(2)
    assert len(api.seen) == 1


def test_a_huge_page_is_split_into_parts_of_batch_size(tmp_path):
    n = 200_000
    body = b'{"items": [' + b",".join(orjson.dumps(item(i)) for i in range(n)) + b'], "has_more": false}'
    with Hostile(lambda h, q: h.send(body)) as api:
        client = make_client(api.url, API_KEY, ApiSettings(**FAST))
        result = extract_window(client, SINCE, UNTIL, tmp_path / "raw", chunk_rows=50_000)
    sizes = [sum(pq.read_table(p)["n"].to_pylist()) for p in result.parts]
    assert result.records == n and sizes == [50_000] * 4


def test_a_server_trickling_its_headers_fails_within_timeout_s():
    def answer(h, q):  # the status line and headers one byte at a time: every read gets a byte in time
        _trickle(h, b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 200)

    _fails_within_timeout_s(answer)


def _big_page(n: int, **rest) -> bytes:
    pad = "x" * 60
    items = b",".join(orjson.dumps({**item(i), "properties": {"ref": pad}}) for i in range(n))
    return b'{"items": [' + items + b"], " + orjson.dumps(rest)[1:]


def test_a_large_json_body_is_streamed_never_held_whole_or_parsed_at_once(monkeypatch):
    import tracemalloc

    from eventpipe.source import formats

    monkeypatch.setattr(formats, "STREAM_ABOVE", 2**20)
    body = _big_page(30_000, has_more=False)  # ~4 MB: parsed at once it peaks at ~18x its size
    with Hostile(lambda h, q: h.send(body)) as api:
        client = make_client(api.url, API_KEY, ApiSettings(**FAST))
        tracemalloc.start()
        try:
            pages = list(client.pages(SINCE, UNTIL))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert sum(p.n for p in pages) == 30_000
    assert peak < 5 * len(body), f"peak {peak / 2**20:.0f} MB for a {len(body) / 2**20:.0f} MB body"


@pytest.mark.parametrize("paginator", ["page_number", "json_link", "cursor", "offset"])
def test_a_streamed_page_reads_as_the_same_records_and_still_paginates(monkeypatch, paginator):
    from eventpipe.source import formats

    dirty = [
        item(1),
        {"user_id": 2**70, "event": "x"},
        {"user_id": "\u00e9\U0001f600", "event": None},
        [1],
        None,
    ]

    def answer(h, q):
        last = q.get("page") == "2" or q.get("cursor") == "c2" or q.get("offset") == "4"
        more = {
            "page_number": {"has_more": not last},
            "json_link": {"next": None if last else "/analytics?page=2"},
            "cursor": {"next_cursor": None if last else "c2"},
            "offset": {"total": 8},
        }[paginator]
        recs = dirty[:4] if not last else [item(7), item(8), dirty[4], item(9)]
        pad = b" " * 3000  # a body past the (lowered) streaming threshold
        h.send(b'{"items": ' + formats.dumps(recs).encode() + b", " + orjson.dumps(more)[1:] + pad)

    spec = {"type": paginator, **({"limit": 4, "total_path": "total"} if paginator == "offset" else {})}
    with Hostile(answer) as api:
        whole = fetch(api.url, paginator=spec)
        monkeypatch.setattr(formats, "STREAM_ABOVE", 1000)
        streamed = fetch(api.url, paginator=spec)
    assert streamed == whole and len(whole) == 8
    assert whole[1]["user_id"] == 2**70 and whole[2]["user_id"] == "\u00e9\U0001f600"


@pytest.mark.parametrize("stream_above", [2**40, 100], ids=["whole", "streamed"])
def test_a_lone_surrogate_in_a_record_makes_it_a_dead_letter_not_a_crash(monkeypatch, stream_above):
    from eventpipe.source import formats

    monkeypatch.setattr(formats, "STREAM_ABOVE", stream_above)
    body = (
        b'{"items": [{"user_id": "\\ud800"}, {"user_id": "\\udc00x"}, {"user_id": "ok"}], "has_more": false}'
    )
    with Hostile(lambda h, q: h.send(body + b" " * 200)) as api:
        records = fetch(api.url)
    assert records[2] == {"user_id": "ok"}
    assert [r[UNPARSED] for r in records[:2]] == ['{"user_id": "\\ud800"}', '{"user_id": "\\udc00x"}']
    assert all("lone surrogate" in r["$eventpipe.reason"] for r in records[:2])


@pytest.mark.parametrize("offset", [180, 190, 199])
def test_a_key_cut_by_the_error_body_limit_leaks_no_prefix_of_it(offset):
    def answer(h, q):  # the key straddles the 200th character of the error body
        h.send(("x" * offset + API_KEY + " tail").encode(), 400)

    with Hostile(answer) as api, pytest.raises(SourceError) as e:
        fetch(api.url)
    assert API_KEY[:3] not in str(e.value)


def test_large_pages_that_differ_are_all_read(monkeypatch):
    monkeypatch.setattr(formats, "SAME_PAGE_BYTES", 0)  # every page told from the one before by its SHA-256

    def answer(h, q):
        n = int(q["page"])
        h.send(orjson.dumps({"items": [item(n), item(n + 100)], "has_more": n < 3}))

    with Hostile(answer) as api:
        assert len(fetch(api.url)) == 6
