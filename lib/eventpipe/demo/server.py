"""The demo API over HTTP: the source contract and the vendor styles, with faults on request.

``DemoServer`` serves a ``DemoData`` stream on loopback (in a thread for the runner, notebooks and
tests; in the foreground for ``demo-api``); ``serving`` points a run's settings at one.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hmac
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import orjson

from .. import clock
from ..errors import SettingsError
from ..settings import Secret, Settings, parse_instant
from . import styles
from .data import HOUR_MS, DemoData, demo_data
from .faults import FaultPlan, serve_fault

log = logging.getLogger(__name__)

DEMO_KEY = "demo-key"
DEMO_USER = "demo-user"
DEMO_PROJECT_ID = "12345"  # the Mixpanel project a service account names (mixpanel-export)
DEMO_PROJECT_SECRET = "demo-project-secret"  # the Mixpanel project's API secret (mixpanel-export)


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


def _us(t: datetime) -> int:
    return (t - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _parse_instant_param(value: str) -> int:
    return int(parse_instant(value).timestamp() * 1000)


IDLE_TIMEOUT_S = 10.0


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(min(ms, 253402300799000) / 1000, tz=timezone.utc)


class Handler(BaseHTTPRequestHandler):
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

    def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def answer_error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.answer(status, orjson.dumps({"error": message}), headers)

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
            return self.answer(200, b'{"ok":true}')
        if url.path != styles.ENDPOINTS[app.style]:
            return self.answer_error(404, f"no such endpoint {url.path}")
        denied = self._auth()
        if denied:
            return self.answer_error(*denied)
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            since, until, page, per_page = self._window(q)
            if page < 1 or not 1 <= per_page <= 10_000:
                raise ValueError
        except (ValueError, KeyError, OverflowError):
            return self.answer_error(
                400, "bad query: page>=1, 1<=per_page<=10000, a window the style understands"
            )
        app.requests += 1
        fault = app.faults.next()
        if fault:
            app.faults_served.append(fault)
            if serve_fault(self, fault):
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
        if app.style in ("posthog", "posthog-events"):
            return self.answer(
                200, b'{"results":[' + records + b'],"next":' + self._next_link(q, more) + b"}"
            )
        if app.style == "json-server":
            link = f'<{self._url(q, _page=page + 1)}>; rel="next"' if more else ""
            return self.answer(200, b"[" + records + b"]", {"Link": link} if link else None)
        if app.style == "offset":
            total = str(app.data.total(since, until)).encode()
            return self.answer(200, b'{"data":[' + records + b'],"total":' + total + b"}")
        if app.style == "cursor":
            cursor = orjson.dumps(_cursor(page + 1) if more else "")
            meta = b'"response_metadata":{"next_cursor":' + cursor + b"}"
            return self.answer(200, b'{"ok":true,"events":[' + records + b"]," + meta + b"}")
        body = b'{"items":[' + records + b'],"has_more":' + (b"true" if more else b"false") + b"}"
        if fault == "missing_items":
            body = b'{"data":[],"has_more":' + (b"true" if more else b"false") + b"}"
        elif fault == "missing_has_more":
            body = b'{"items":[' + records + b"]}"
        self.answer(200, body)

    def _auth(self) -> tuple[int, str] | None:
        """None when the request carries the style's credentials, else the error to answer."""
        app = self.server
        if app.style in styles.NO_AUTH:
            return None
        auth = self.headers.get("Authorization", "")
        if app.style in styles.HEADER_KEY:
            auth = "Bearer " + self.headers.get(styles.HEADER_KEY[app.style], "")
        if app.style in styles.MIXPANEL_AUTH:
            return self._mixpanel_auth(auth)
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

    def _mixpanel_auth(self, auth: str) -> tuple[int, str] | None:
        """Mixpanel's two ways into the raw export: a service account (its user name and secret, and the
        ``project_id`` query parameter, which a service account must name) or the project's API secret as
        the user name with an empty password."""
        app = self.server
        missing = 401, "missing basic credentials: a service account, or the project secret as the user name"
        if not auth.startswith("Basic "):
            return missing
        try:
            user, _, password = base64.b64decode(auth[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return missing
        if _same(user, app.project_secret) and password == "":
            return None
        if not (_same(user, app.api_user) and _same(password, app.api_key)):
            return 401, "Invalid username or password"
        project = parse_qs(urlparse(self.path).query).get("project_id", [""])[-1]
        if not project:
            return 400, "project_id is required when authenticating with a service account"
        if project != app.project_id:
            return 403, f"this service account has no access to project {project}"
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
        if style == "posthog-events":  # PostHog's limits on its deprecated listing
            limit, offset = int(q.get("limit", "100")), int(q.get("offset", "0"))
            now_us = _us(self.server.data.config.now or clock.now())
            # both bounds exclusive (timestamp > after AND timestamp < before); no after: the last 24 hours
            after = _us(parse_instant(q["after"])) if q.get("after") else now_us - 24 * HOUR_MS * 1000
            before = _us(parse_instant(q["before"])) if q.get("before") else now_us
            if offset > 50_000 or before - after >= 365 * 24 * HOUR_MS * 1000:
                raise ValueError(q)
            return after // 1000 + 1, -(-before // 1000), offset // limit + 1, limit
        if style in ("mixpanel", "mixpanel-export"):  # whole days, both ends inclusive
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
        if app.style in ("mixpanel", "mixpanel-export"):
            bodies = [g.body for g in app.data.events(_dt(since), _dt(until))]
            body, headers = styles.jsonl(styles.render_all(app.style, bodies)), {}
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                body, headers = gzip.compress(body, mtime=0), {"Content-Encoding": "gzip"}
        else:  # Amplitude's export selects by upload time, [since, until), of the uploads made by now
            uploaded = app.data.uploaded(_dt(since), _dt(until), styles.upload_ms, styles.MAX_UPLOAD_LAG_MS)
            body, headers = styles.amplitude_export(uploaded), {"Content-Type": "application/zip"}
        self.answer(200, body[: len(body) // 2] if cut else body, headers)


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
        project_id: str = DEMO_PROJECT_ID,
        project_secret: str = DEMO_PROJECT_SECRET,
    ):
        if style not in styles.STYLES:
            raise SettingsError(
                f"demo-api --style {style!r} is unknown: use one of {', '.join(styles.STYLES)}"
            )
        super().__init__((host, port), Handler)
        self.idle_timeout_s = idle_timeout_s
        self.data = data
        self.style = style
        self.api_user = api_user
        self.api_key = api_key
        self.project_id = project_id
        self.project_secret = project_secret
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
