"""The bundled demo API: deterministic synthetic events behind the source contract.

Events are generated per hour of event time from ``(seed, hour)``, so any
window is reproducible and ``expected_rows`` can say exactly what a correct
pipeline must store. A configurable share of records is dirty (every kind the
record rules reject), event names and timestamp forms are messy, some events
are sent twice (the later copy wins), and faults (429 with ``Retry-After``,
5xx, slow pages, dropped connections, broken bodies) are switched on by flags.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import gzip
import hmac
import json
import logging
import random
import socket
import threading
import time
from array import array
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import formatdate
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import orjson

from ..errors import SettingsError
from ..settings import DemoSettings, Secret, Settings, parse_instant
from . import styles

log = logging.getLogger(__name__)
_DEFAULTS = DemoSettings()

DEMO_KEY = "demo-key"
DEMO_USER = "demo-user"
HOUR_MS = 3_600_000
EVENTS = ("page_view", "click", "sign_up", "purchase", "logout")
EVENT_WEIGHTS = (50, 30, 5, 5, 10)
TIME_FORMS = ("iso_z", "iso_offset", "iso_naive", "iso_space", "epoch_s", "epoch_s_float", "epoch_ms")
DIRTY_KINDS = (
    "user_id_missing",
    "user_id_null",
    "user_id_empty",
    "user_id_list",
    "event_not_allowed",
    "event_missing",
    "timestamp_unparseable",
    "timestamp_text_garbage",
    "timestamp_missing",
    "timestamp_before_min",
    "timestamp_future",
    "properties_list",
    "properties_number",
    "properties_bad_text",
    "not_an_object",
)
FAULT_KINDS = (
    "429",
    "429date",
    "500",
    "502",
    "503",
    "504",
    "slow",
    "drop",
    "truncate",
    "missing_items",
    "missing_has_more",
    "repeat",
)


def _cursor(page: int) -> str:
    """The cursor style's opaque next cursor (a page number, base64'd as real APIs obscure theirs)."""
    return base64.urlsafe_b64encode(f"page:{page}".encode()).decode()


def _page_of(cursor: str) -> int:
    if not cursor:
        return 1
    text = base64.urlsafe_b64decode(cursor.encode()).decode()
    if not text.startswith("page:"):
        raise ValueError(cursor)
    return int(text[5:])


@dataclass(frozen=True)
class Truth:
    """What a correct pipeline stores for one clean event."""

    user_id: str
    timestamp_ms: int
    event_type: str
    properties: dict
    session_id: str | None


@dataclass(frozen=True)
class Generated:
    sort_ms: int  # position in API order (and the instant used for since/until)
    ordinal: int  # tie-breaker inside an hour
    body: bytes  # the item exactly as served
    truth: Truth | None  # None: dirty, must be rejected
    dirty_kind: str | None


@dataclass(frozen=True)
class DemoConfig:
    seed: int = _DEFAULTS.seed
    events_per_hour: int = _DEFAULTS.events_per_hour
    dirty_share: float = _DEFAULTS.dirty_share
    duplicate_share: float = _DEFAULTS.duplicate_share
    start: datetime = datetime(2024, 1, 1, tzinfo=timezone.utc)
    live: bool = True  # never serve events later than the server's clock
    end: datetime | None = None  # no events from here on (a source that stopped changing)


def _iso_ms(ms: int, offset_min: int = 0, z: bool = True, sep: str = "T", naive: bool = False) -> str:
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc).astimezone(
        timezone(timedelta(minutes=offset_min))
    )
    text = dt.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + f".{ms % 1000:03d}"
    if naive:
        return text
    if z and offset_min == 0:
        return text + "Z"
    sign = "+" if offset_min >= 0 else "-"
    return text + f"{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"


def _render_time(rng: random.Random, ms: int) -> tuple[Any, int]:
    """A timestamp in one of the accepted forms; returns (value, the instant it denotes in ms)."""
    form = rng.choice(TIME_FORMS)
    if form == "iso_z":
        return _iso_ms(ms), ms
    if form == "iso_offset":
        return _iso_ms(ms, offset_min=rng.choice((120, -300, 330, 60))), ms
    if form == "iso_naive":
        return _iso_ms(ms, naive=True), ms
    if form == "iso_space":
        return _iso_ms(ms, z=False, sep=" "), ms
    if form == "epoch_s":
        return ms // 1000, (ms // 1000) * 1000
    if form == "epoch_s_float":
        return round(ms / 1000, 3), ms
    return ms, ms


def _render_event(rng: random.Random, name: str) -> str:
    words = name.split("_")
    return rng.choice(
        (
            name,
            " ".join(w.title() for w in words),
            "-".join(w.upper() for w in words),
            f"  {name.replace('_', ' ')} ",
            "_".join(w.title() for w in words),
        )
    )


def _properties(rng: random.Random, k: int) -> dict:
    props: dict[str, Any] = {"path": f"/p/{rng.randrange(50)}", "k": k}
    if rng.random() < 0.3:
        props["ref"] = {
            "source": rng.choice(("ads", "mail", "direct")),
            "tags": ["a", "b"][: rng.randrange(3)],
        }
    if rng.random() < 0.1:
        props["note"] = rng.choice(("café ☕", 'he said "hi"', "x'); DROP TABLE analytics;--", "emoji 🎉"))
    return props


def _render_exact(rng: random.Random, ms: int) -> Any:
    """A timestamp form that denotes exactly ``ms`` (epoch seconds only for whole seconds)."""
    value, denoted = _render_time(rng, ms)
    return value if denoted == ms else _iso_ms(ms)


def _make_item(rng: random.Random, truth: Truth) -> dict:
    """Render a clean event in one of its many accepted shapes."""
    user: Any = int(truth.user_id) if truth.user_id.isdigit() else truth.user_id
    if isinstance(user, str) and rng.random() < 0.1:
        user = f" {user}  "
    item: dict[str, Any] = {
        "user_id": user,
        "event": _render_event(rng, truth.event_type),
        "timestamp": _render_exact(rng, truth.timestamp_ms),
    }
    form = rng.random()
    if truth.properties == {}:
        if form < 0.5:
            item["properties"] = None
    elif form < 0.2:
        item["properties"] = json.dumps(truth.properties, ensure_ascii=False)
    else:
        item["properties"] = truth.properties
    if truth.session_id is not None or rng.random() < 0.5:
        item["session_id"] = truth.session_id
    return item


def _dirty_item(rng: random.Random, kind: str, ms: int) -> Any:
    item: dict[str, Any] = {
        "user_id": f"u{rng.randrange(1000)}",
        "event": _render_event(rng, rng.choice(EVENTS)),
        "timestamp": _iso_ms(ms),
        "properties": {"path": "/dirty"},
        "session_id": None,
    }
    if kind == "user_id_missing":
        del item["user_id"]
    elif kind == "user_id_null":
        item["user_id"] = None
    elif kind == "user_id_empty":
        item["user_id"] = "   "
    elif kind == "user_id_list":
        item["user_id"] = ["u1"]
    elif kind == "event_not_allowed":
        item["event"] = rng.choice(("Bogus Event", "page_vieww", "scroll"))
    elif kind == "event_missing":
        del item["event"]
    elif kind == "timestamp_unparseable":
        dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
        item["timestamp"] = dt.strftime("%m/%d/%Y %H:%M")
    elif kind == "timestamp_text_garbage":
        item["timestamp"] = rng.choice(("yesterday", "", "1714557600"))
    elif kind == "timestamp_missing":
        del item["timestamp"]
    elif kind == "timestamp_before_min":
        item["timestamp"] = "2019-06-01T00:00:00Z"
    elif kind == "timestamp_future":
        item["timestamp"] = "2099-01-01T00:00:00Z"
    elif kind == "properties_list":
        item["properties"] = [1, 2, 3]
    elif kind == "properties_number":
        item["properties"] = 42
    elif kind == "properties_bad_text":
        item["properties"] = "{not json"
    elif kind == "not_an_object":
        return ["not", "an", "object"]
    return item


def _generate_hour(seed: int, eph: int, dirty: float, dup: float, hour: int) -> list[Generated]:
    """Every event of one hour of event time, in API order, with what a correct pipeline stores."""
    rng = random.Random(f"{seed}:{eph}:{dirty}:{dup}:{hour}")
    out: list[Generated] = []
    base = hour * HOUR_MS
    for i in range(eph):
        ms = base + rng.randrange(HOUR_MS)
        if rng.random() < dirty:
            kind = DIRTY_KINDS[rng.randrange(len(DIRTY_KINDS))]
            out.append(Generated(ms, i, orjson.dumps(_dirty_item(rng, kind, ms)), None, kind))
            continue
        form = rng.random()
        user = str(rng.randrange(1000)) if form < 0.15 else f"u{rng.randrange(1000)}"
        event = rng.choices(EVENTS, EVENT_WEIGHTS)[0]
        if rng.random() < 0.15:
            ms -= ms % 1000  # whole seconds, so epoch-seconds forms occur too
        props = {} if rng.random() < 0.1 else _properties(rng, i)
        session = None if rng.random() < 0.2 else f"s{rng.randrange(5000)}"
        truth = Truth(user, ms, event, props, session)
        out.append(Generated(ms, i, orjson.dumps(_make_item(rng, truth)), truth, None))
        if rng.random() < dup:
            # the same event sent again later in the same hour, with newer properties: the copy wins
            later = ms + rng.randrange(max(1, base + HOUR_MS - ms))
            copy = Truth(user, ms, event, {**props, "copy": True}, session)
            out.append(Generated(later, eph + i, orjson.dumps(_make_item(rng, copy)), copy, None))
    out.sort(key=lambda g: (g.sort_ms, g.ordinal))
    return out


@dataclass(frozen=True)
class _Block:
    """Served events in API order, packed: ~(body + 9) bytes an event instead of Python objects.

    A million generated events as ``Generated`` objects cost ~4.7 GB; packed, about 0.35 GB, so
    the benchmark's 5M-event windows fit in memory beside the pipeline. The bodies are stored
    comma-separated, so a page's items are one slice of ``blob``.
    """

    keys: array  # sort_ms per event, ascending
    blob: bytes  # the bodies joined by b","
    offsets: array  # body i is blob[offsets[i]:offsets[i + 1] - 1]

    @classmethod
    def pack(cls, events: list[tuple[int, bytes]]) -> _Block:
        offsets = array("q", [0])
        total = 0
        for _, body in events:
            total += len(body) + 1
            offsets.append(total)
        return cls(array("q", (ms for ms, _ in events)), b",".join(body for _, body in events), offsets)

    def __len__(self) -> int:
        return len(self.keys)

    def run(self, a: int, b: int) -> bytes:
        """Items ``a`` to ``b - 1``, comma-separated (as they sit in a JSON array)."""
        return self.blob[self.offsets[a] : self.offsets[b] - 1]

    def bodies(self, a: int, b: int) -> list[bytes]:
        blob, o = self.blob, self.offsets
        return [blob[o[i] : o[i + 1] - 1] for i in range(a, b)]


@lru_cache(maxsize=256)
def _hour(seed: int, eph: int, dirty: float, dup: float, hour: int) -> _Block:
    return _Block.pack([(g.sort_ms, g.body) for g in _generate_hour(seed, eph, dirty, dup, hour)])


class DemoData:
    """The synthetic event stream: the generated events plus any appended by tests."""

    def __init__(self, config: DemoConfig):
        self.config = config
        self._extra: list[Generated] = []
        self._lock = threading.Lock()

    def append(self, item: Any, sort_time: datetime, truth: Truth | None = None) -> None:
        """Add an event (e.g. a late arrival) that is served from now on at ``sort_time``."""
        ms = int(sort_time.timestamp() * 1000)
        with self._lock:
            self._extra.append(Generated(ms, 10**9 + len(self._extra), orjson.dumps(item), truth, None))
            self._extra.sort(key=lambda g: (g.sort_ms, g.ordinal))

    def _bounds(self, since_ms: int, until_ms: int) -> tuple[int, int]:
        start_ms = int(self.config.start.timestamp() * 1000)
        if self.config.live:
            until_ms = min(until_ms, int(time.time() * 1000))
        if self.config.end is not None:
            until_ms = min(until_ms, int(self.config.end.timestamp() * 1000))
        return max(since_ms, start_ms), until_ms

    def _extra_in(self, lo_ms: int, hi_ms: int) -> list[Generated]:
        with self._lock:
            return [g for g in self._extra if lo_ms <= g.sort_ms < hi_ms]

    def _hours(self, lo_ms: int, hi_ms: int) -> range:
        return range(lo_ms // HOUR_MS, (hi_ms - 1) // HOUR_MS + 1) if hi_ms > lo_ms else range(0)

    def _segments(self, since_ms: int, until_ms: int) -> list[tuple[_Block, int, int]]:
        lo_ms, hi_ms = self._bounds(since_ms, until_ms)
        segs: list[tuple[_Block, int, int]] = []
        c = self.config
        for hour in self._hours(lo_ms, hi_ms):
            block = _hour(c.seed, c.events_per_hour, c.dirty_share, c.duplicate_share, hour)
            a, b = bisect.bisect_left(block.keys, lo_ms), bisect.bisect_left(block.keys, hi_ms)
            if b > a:
                segs.append((block, a, b))
        extra = self._extra_in(lo_ms, hi_ms)
        if extra:  # appended events merge in by time, after generated ones at the same instant
            served = [
                (block.keys[i], 0, i, body)
                for block, a, b in segs
                for i, body in zip(range(a, b), block.bodies(a, b))
            ]
            served += [(g.sort_ms, 1, g.ordinal, g.body) for g in extra]
            served.sort(key=lambda e: e[:3])
            merged = _Block.pack([(ms, body) for ms, _, _, body in served])
            segs = [(merged, 0, len(merged))]
        return segs

    def total(self, since_ms: int, until_ms: int) -> int:
        """How many events ``[since, until)`` holds (an offset API's ``total``)."""
        return sum(b - a for _, a, b in self._segments(since_ms, until_ms))

    def page(self, since_ms: int, until_ms: int, page: int, per_page: int) -> tuple[list[bytes], int, bool]:
        """One page: (runs of comma-separated items, how many items, whether more follow)."""
        offset, need = (page - 1) * per_page, per_page
        runs: list[bytes] = []
        got = total = 0
        segs = self._segments(since_ms, until_ms)
        for block, a, b in segs:
            n = b - a
            if offset >= total + n:
                total += n
                continue
            start = a + max(0, offset - total)
            end = min(b, start + need - got)
            runs.append(block.run(start, end))
            got += end - start
            total += n
            if got >= need:
                break
        remaining = sum(b - a for _, a, b in segs) if got >= need else 0
        return runs, got, remaining > offset + got

    def events(self, since: datetime, until: datetime) -> Iterator[Generated]:
        """The events served for ``[since, until)`` in API order, with their truth (generated afresh)."""
        lo_ms, hi_ms = self._bounds(int(since.timestamp() * 1000), int(until.timestamp() * 1000))
        c = self.config
        events = [
            g
            for hour in self._hours(lo_ms, hi_ms)
            for g in _generate_hour(c.seed, c.events_per_hour, c.dirty_share, c.duplicate_share, hour)
            if lo_ms <= g.sort_ms < hi_ms
        ]
        extra = self._extra_in(lo_ms, hi_ms)
        if extra:
            events = sorted(events + extra, key=lambda g: (g.sort_ms, g.ordinal))
        yield from events

    def expected_rows(self, since: datetime, until: datetime) -> dict[tuple[str, int, str], Truth]:
        """Key ``(user_id, timestamp_ms, event_type)`` -> the row a correct load stores (last copy wins)."""
        rows: dict[tuple[str, int, str], Truth] = {}
        for g in self.events(since, until):
            if g.truth is not None:
                rows[(g.truth.user_id, g.truth.timestamp_ms, g.truth.event_type)] = g.truth
        return rows


@dataclass
class FaultPlan:
    """Every ``every``-th request gets the next fault of ``kinds`` (deterministic for a sequential client)."""

    kinds: tuple[str, ...] = ()
    every: int = 3
    retry_after: str = "1"
    slow_s: float = 2.0
    limit: int | None = None  # stop injecting after this many faults
    _count: int = 0
    _injected: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> str | None:
        with self._lock:
            self._count += 1
            if not self.kinds or self._count % self.every:
                return None
            if self.limit is not None and self._injected >= self.limit:
                return None
            kind = self.kinds[self._injected % len(self.kinds)]
            self._injected += 1
            return kind


def _parse_instant_param(value: str) -> int:
    return int(parse_instant(value).timestamp() * 1000)


IDLE_TIMEOUT_S = 10.0


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(min(ms, 253402300799000) / 1000, tz=timezone.utc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small pages otherwise wait ~40 ms for delayed ACKs
    server: DemoServer

    def setup(self) -> None:
        # socket timeout for every read: a client that sends half a request (or idles on a kept-alive
        # connection) is dropped after it, instead of holding a thread for ever
        self.timeout = self.server.idle_timeout_s
        super().setup()

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("demo-api %s", fmt % args)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, orjson.dumps({"error": message}), headers)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        arrived = time.monotonic()
        self._status = 0  # 0: the connection was dropped mid-answer
        if self.server.latency_s:  # a far-away API: every answer takes this long to start
            time.sleep(self.server.latency_s)
        try:
            self._get()
        finally:
            self.server.log_request_done(arrived, self.path, self._status)

    def _get(self) -> None:
        app = self.server
        url = urlparse(self.path)
        if url.path == "/health":
            return self._send(200, b'{"ok":true}')
        if url.path != styles.ENDPOINTS[app.style]:
            return self._error(404, f"no such endpoint {url.path}")
        denied = self._auth()
        if denied:
            return self._error(*denied)
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            since, until, page, per_page = self._window(q)
            if page < 1 or not 1 <= per_page <= 10_000:
                raise ValueError
        except (ValueError, KeyError, OverflowError):
            return self._error(400, "bad query: page>=1, 1<=per_page<=10000, a window the style understands")
        app.requests += 1
        fault = app.faults.next()
        if fault:
            app.faults_served.append(fault)
            if self._fault(fault):
                return
        if app.style in styles.EXPORTS:
            return self._export(since, until, cut=fault == "truncate")
        items, count, more = app.data.page(since, until, page, per_page)
        if (
            fault == "repeat" and page > 1
        ):  # the previous page's items again, as offset paging does on inserts
            items = app.data.page(since, until, page - 1, per_page)[0] + items
        if app.lazy_has_more:  # say "more" whenever the page is full: the last page may then be empty
            more = count >= per_page
        records = b",".join(styles.render_all(app.style, items) if app.style != "contract" else items)
        if app.style == "posthog":
            return self._send(200, b'{"results":[' + records + b'],"next":' + self._next_link(q, more) + b"}")
        if app.style == "json-server":
            link = f'<{self._url(q, _page=page + 1)}>; rel="next"' if more else ""
            return self._send(200, b"[" + records + b"]", {"Link": link} if link else None)
        if app.style == "offset":
            total = str(app.data.total(since, until)).encode()
            return self._send(200, b'{"data":[' + records + b'],"total":' + total + b"}")
        if app.style == "cursor":
            cursor = orjson.dumps(_cursor(page + 1) if more else "")
            meta = b'"response_metadata":{"next_cursor":' + cursor + b"}"
            return self._send(200, b'{"ok":true,"events":[' + records + b"]," + meta + b"}")
        body = b'{"items":[' + records + b'],"has_more":' + (b"true" if more else b"false") + b"}"
        if fault == "missing_items":
            body = b'{"data":[],"has_more":' + (b"true" if more else b"false") + b"}"
        elif fault == "missing_has_more":
            body = b'{"items":[' + records + b"]}"
        self._send(200, body)

    def _auth(self) -> tuple[int, str] | None:
        """None when the request carries the style's credentials, else the error to answer."""
        app = self.server
        if app.style in styles.NO_AUTH:
            return None
        auth = self.headers.get("Authorization", "")
        if app.style in styles.HEADER_KEY:
            auth = "Bearer " + self.headers.get(styles.HEADER_KEY[app.style], "")
        if app.style in styles.BASIC_AUTH:
            expected = "Basic " + base64.b64encode(f"{app.api_user}:{app.api_key}".encode()).decode()
            ok = hmac.compare_digest(auth.encode(), expected.encode())
            return None if ok else (401, "missing or wrong basic credentials")
        given = auth[7:].encode() if auth.startswith("Bearer ") else b""
        if given and given.decode("utf-8", "replace") in app.revoked_keys:
            return 403, "this key is revoked"
        if not given or not hmac.compare_digest(given, app.api_key.encode()):
            return 401, "missing or wrong bearer key"
        return None

    def _window(self, q: dict[str, str]) -> tuple[int, int, int, int]:
        """(since ms, until ms, page, per_page) from the style's own parameter names."""
        style = self.server.style
        if style == "posthog":
            limit = int(q.get("limit", "100"))
            return (
                _parse_instant_param(q["after"]) if q.get("after") else 0,
                _parse_instant_param(q["before"]) if q.get("before") else 2**62,
                int(q.get("offset", "0")) // limit + 1,
                limit,
            )
        if style == "mixpanel":  # whole days, both ends inclusive
            lo, hi = styles.parse_date(q["from_date"]), styles.parse_date(q["to_date"]) + timedelta(days=1)
            return int(lo.timestamp() * 1000), int(hi.timestamp() * 1000), 1, 1
        if style == "amplitude":  # whole hours, both ends inclusive
            lo, hi = styles.parse_hour(q["start"]), styles.parse_hour(q["end"]) + styles.HOUR
            return int(lo.timestamp() * 1000), int(hi.timestamp() * 1000), 1, 1
        if style == "json-server":  # ts_gte / ts_lte, both inclusive, at millisecond granularity
            return (
                _parse_instant_param(q["ts_gte"]) if q.get("ts_gte") else 0,
                _parse_instant_param(q["ts_lte"]) + 1 if q.get("ts_lte") else 2**62,
                int(q.get("_page", "1")),
                int(q.get("_limit", "10")),
            )
        since = _parse_instant_param(q["since"]) if q.get("since") else 0
        until = _parse_instant_param(q["until"]) if q.get("until") else 2**62
        if style == "offset":  # any offset a multiple of the limit (what an offset paginator sends)
            limit, offset = int(q.get("limit", "100")), int(q.get("offset", "0"))
            if limit < 1 or offset % limit:
                raise ValueError
            return since, until, offset // limit + 1, limit
        if style == "cursor":
            return since, until, _page_of(q.get("cursor", "")), int(q.get("limit", "100"))
        return since, until, int(q.get("page", "1")), int(q.get("per_page", "100"))

    def _url(self, q: dict[str, str], **changes: Any) -> str:
        host = self.headers.get("Host") or self.server.url.split("//", 1)[1]
        return f"http://{host}{styles.ENDPOINTS[self.server.style]}?{urlencode({**q, **changes})}"

    def _next_link(self, q: dict[str, str], more: bool) -> bytes:
        if not more:
            return b"null"
        limit = int(q.get("limit", "100"))
        return orjson.dumps(self._url(q, offset=int(q.get("offset", "0")) + limit))

    def _export(self, since: int, until: int, cut: bool = False) -> None:
        """The whole window in one answer: JSON Lines (gzipped if asked) or a zip of gzipped JSON Lines.
        ``cut``: only its first half is sent, under an honest Content-Length (a body that ends early)."""
        app = self.server
        bodies = [g.body for g in app.data.events(_dt(since), _dt(until))]
        rendered = styles.render_all(app.style, bodies)
        if app.style == "mixpanel":
            body, headers = styles.jsonl(rendered), {}
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                body, headers = gzip.compress(body, mtime=0), {"Content-Encoding": "gzip"}
        else:
            by_hour: dict[int, list[bytes]] = {}
            for g, line in zip(app.data.events(_dt(since), _dt(until)), rendered):
                by_hour.setdefault(g.sort_ms // HOUR_MS, []).append(line)
            hours = [(_dt(h * HOUR_MS), b) for h, b in sorted(by_hour.items())]
            body, headers = styles.amplitude_zip(hours), {"Content-Type": "application/zip"}
        self._send(200, body[: len(body) // 2] if cut else body, headers)

    def _fault(self, fault: str) -> bool:
        """Serve a fault; True when the response is complete."""
        plan = self.server.faults
        if fault in ("429", "429date"):
            ra = (
                plan.retry_after
                if fault == "429"
                else formatdate(time.time() + float(plan.retry_after), usegmt=True)
            )
            self._error(429, "slow down", {"Retry-After": ra})
            return True
        if fault in ("500", "502", "503", "504"):
            self._error(int(fault), "upstream trouble")
            return True
        if fault == "slow":
            time.sleep(plan.slow_s)
            return False
        if fault == "drop":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b'{"items":[{"user_id":')
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return True
        if fault == "truncate":
            if self.server.style in styles.EXPORTS:
                return False  # the export itself, cut short (``_export``)
            self._send(200, b'{"items":[{"user_id":"u1","event":"click"')
            return True
        return False


REQUEST_LOG_SIZE = 1_000_000  # the latest requests kept in ``DemoServer.request_log``


@dataclass(frozen=True)
class LoggedRequest:
    """One request the demo API served: arrival and answer times (monotonic), path with query, status."""

    arrived: float
    answered: float
    path: str
    status: int


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many clients connecting at once are accepted, not left in a 5-deep backlog

    def __init__(
        self,
        data: DemoData,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEMO_KEY,
        faults: FaultPlan | None = None,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        style: str = "contract",
        api_user: str = DEMO_USER,
        latency_s: float = 0.0,
    ):
        if style not in styles.STYLES:
            raise SettingsError(
                f"demo-api --style {style!r} is unknown: use one of {', '.join(styles.STYLES)}"
            )
        super().__init__((host, port), _Handler)
        self.idle_timeout_s = idle_timeout_s
        self.data = data
        self.style = style
        self.api_user = api_user
        self.api_key = api_key
        self.faults = faults or FaultPlan()
        self.revoked_keys: set[str] = set()
        self.lazy_has_more = False
        self.requests = 0
        self.faults_served: list[str] = []
        self.latency_s = latency_s
        self.request_log: deque[LoggedRequest] = deque(maxlen=REQUEST_LOG_SIZE)
        self._log_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def log_request_done(self, arrived: float, path: str, status: int) -> None:
        """Keep when a request arrived and when its answer was sent (``time.monotonic()``), for tests and bench."""
        with self._log_lock:
            self.request_log.append(LoggedRequest(arrived, time.monotonic(), path, status))

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> DemoServer:
        """Serve in a daemon thread (for the runner, notebooks and tests)."""
        self._thread = threading.Thread(target=self.serve_forever, name="demo-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@contextmanager
def serving(settings: Settings) -> Iterator[Settings]:
    """Serve the bundled demo API from this process; yields the settings pointed at it (URL and key)."""
    with DemoServer(demo_data(settings.demo), api_key=DEMO_KEY) as server:
        log.info("serving the bundled demo API at %s", server.url)
        yield dataclasses.replace(
            settings, api=dataclasses.replace(settings.api, base_url=server.url), api_key=Secret(DEMO_KEY)
        )


def demo_data(d: DemoSettings) -> DemoData:
    """The demo event stream that the ``demo`` settings section describes."""
    return DemoData(
        DemoConfig(
            seed=d.seed,
            events_per_hour=d.events_per_hour,
            dirty_share=d.dirty_share,
            duplicate_share=d.duplicate_share,
        )
    )


def parse_faults(spec: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in spec.split(",") if k.strip())
    bad = [k for k in kinds if k not in FAULT_KINDS]
    if bad:
        raise SettingsError(f"unknown fault {bad[0]!r}: choose from {', '.join(FAULT_KINDS)}")
    return kinds
