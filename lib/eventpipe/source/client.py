"""Source client: fetches every page of a window with auth, limits, pacing and retries.

The page strategy (``paginators``), the response format (``formats``) and how the window is sent
(``window``) are chosen by ``config.SourceConfig``; this client never changes to add one. The retry
policy is data (``retry``), applied by tenacity. For every strategy the client refuses a request to
another host, a request it already made (a repeating cursor or next link), a page identical to the
one before, and more than ``api.max_pages`` pages. No secret ever appears in a message.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_before_delay

from ..errors import RetriesExhausted, SourceError
from ..jsonio import loads
from ..settings import ApiSettings
from .config import SourceConfig
from .deadline import Watch, deadline, mount
from .formats import BadBody, BodyDeadline, BodyDropped, BodyTooLarge, Limits, Records, read_records
from .paginators import PageShapeError, Paginator, Request, Response
from .retry import RetryableFault, RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)
_MB = 2**20


@dataclass
class FetchStats:
    pages: int = 0
    items: int = 0
    attempts: int = 0
    retries: int = 0
    bytes: int = 0
    faults: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pages": self.pages,
            "items": self.items,
            "attempts": self.attempts,
            "retries": self.retries,
            "bytes": self.bytes,
            "faults": dict(self.faults),
        }


@dataclass
class Page:
    """One page's records, as JSON arrays of at most ``chunk_rows`` records each."""

    number: int
    chunks: list[bytes]
    counts: list[int]

    @property
    def n(self) -> int:
        return sum(self.counts)

    def records(self) -> list[Any]:
        """The page's records, parsed (for ``source check`` and tests; extract keeps the chunks as they are)."""
        return [r for chunk in self.chunks for r in loads(chunk)]


def _origin(url: str) -> tuple[str, str, int | None]:
    u = urlsplit(url)
    port = u.port or {"http": 80, "https": 443}.get(u.scheme)
    return u.scheme, (u.hostname or "").lower(), port


class SourceClient:
    """Fetches every page of ``[since, until)`` as ``config`` describes, with limits and retries."""

    def __init__(
        self,
        base_url: str,
        config: SourceConfig,
        api: ApiSettings,
        session: requests.Session | None = None,
    ):
        self.url = base_url.rstrip("/") + api.endpoint
        self.origin = _origin(self.url)
        self.api = api
        self.config = config
        self.auth = config.auth
        self.policy = RetryPolicy.from_settings(api)
        self.session = session or requests.Session()
        mount(self.session)
        self.session.headers["Accept"] = "application/json"
        self.session.headers.update(config.auth.headers)
        if config.auth.basic:
            self.session.auth = config.auth.basic
        self.session.trust_env = False  # no .netrc credentials or proxies from the environment
        self.stats = FetchStats()
        self._last_request = 0.0

    def describe(self) -> str:
        return f"{self.config.paginator_type} pages of {self.config.format} at {self.url}, records at {self.config.records!r}"

    def pages(self, since: datetime, until: datetime, chunk_rows: int = 100_000) -> Iterator[Page]:
        """Every page of every slice of the window, in API order."""
        for a, b in self.config.window.slices(since, until):
            yield from self._slice(a, b, chunk_rows)

    def _slice(self, since: datetime, until: datetime, chunk_rows: int) -> Iterator[Page]:
        request = Request(self.url, {**self.config.params, **self.config.window.params(since, until)})
        paginator = self.config.paginator()
        paginator.init_request(request)
        asked: set[str] = set()
        previous = ""
        while True:
            self._check_request(request, asked)
            number = self.stats.pages + 1
            records = self._fetch_with_retries(request, paginator, number, chunk_rows)
            if records.n and records.digest == previous:
                raise SourceError(
                    self.auth.redact(
                        f"page {number} of {self.url} holds exactly the records of the page before: the API "
                        "repeats itself (has_more or a next link that never ends); the run stops instead of looping"
                    ),
                    page=number,
                )
            previous = records.digest
            self.stats.pages += 1
            self.stats.items += records.n
            yield Page(number, records.chunks, records.counts)
            if not paginator.has_next:
                return
            paginator.update_request(request)

    def _check_request(self, request: Request, asked: set[str]) -> None:
        """Refuse another host, a request already made, and more than ``api.max_pages`` pages."""
        if _origin(request.url) != self.origin:
            scheme, host, port = _origin(request.url)
            raise SourceError(
                f"refused to follow a next link to {scheme}://{host}:{port}, not the configured "
                f"{self.origin[0]}://{self.origin[1]}:{self.origin[2]}: credentials are only ever sent to the "
                "configured host"
            )
        key = request.url + "?" + urlencode(sorted((k, str(v)) for k, v in request.params.items()))
        if key in asked:
            raise SourceError(
                self.auth.redact(
                    f"the API sent the same cursor or next link again ({key[:120]}): the run stops instead of "
                    "reading the same page forever"
                )
            )
        asked.add(key)
        if self.stats.pages >= self.api.max_pages:
            raise SourceError(
                f"more than api.max_pages={self.api.max_pages} pages for one run at {self.url}: the API may be "
                "looping; raise api.max_pages if the window really is that large"
            )

    def _fetch_with_retries(
        self, request: Request, paginator: Paginator, number: int, chunk_rows: int
    ) -> Records:
        retrying = Retrying(
            stop=stop_after_attempt(self.policy.max_retries + 1) | stop_before_delay(self.policy.budget_s),
            wait=self.policy.wait,
            retry=retry_if_exception_type(RetryableFault),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            return retrying(self._fetch_once, request, paginator, number, chunk_rows)
        except RetryableFault as e:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise RetriesExhausted(
                self.auth.redact(
                    f"page {number} of {self.url} still failing after {attempts} attempts (last: {e}); "
                    f"the run stops here and the next run re-reads this window. Raise api.max_retries "
                    f"or api.retry_budget_s if the API is known to be slow to recover"
                ),
                page=number,
                attempts=attempts,
                last_error=self.auth.redact(str(e)),
            ) from None

    def _before_sleep(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "page %s attempt %d failed (%s); retrying in %.2fs",
            state.args[2],
            state.attempt_number,
            self.auth.redact(str(exc)),
            state.upcoming_sleep,
        )

    def _pace(self) -> None:
        """Keep ``api.min_interval_s`` between two requests."""
        wait = self._last_request + self.api.min_interval_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_request = time.monotonic()

    def _fetch_once(self, request: Request, paginator: Paginator, number: int, chunk_rows: int) -> Records:
        self.stats.attempts += 1
        self._pace()
        timeout = self.api.timeout_s
        with deadline(timeout) as watch:  # headers and body together, however slowly they trickle
            records, resp = self._get(request, paginator.body_paths, number, chunk_rows, timeout, watch)
        try:
            paginator.update_state(Response(resp.url, resp.headers, records.body, records.n))
        except PageShapeError as e:
            self._fault("bad_shape")
            raise RetryableFault("bad body", f"page {number} {e}") from None
        records.body = None
        return records

    def _get(
        self,
        request: Request,
        keep: tuple[str, ...],
        number: int,
        chunk_rows: int,
        timeout: float,
        watch: Watch,
    ) -> tuple[Records, requests.Response]:
        """One GET and its body read under the response limits (``RetryableFault`` for what may pass)."""
        limits = Limits(
            int(self.api.max_response_mb * _MB),
            int(self.api.max_decompressed_mb * _MB),
            time.monotonic() + timeout,
        )
        params = {**request.params, **self.auth.query}
        try:
            resp = self.session.get(request.url, params=params, timeout=timeout, stream=True)
        except requests.Timeout:
            self._fault("timeout")
            raise RetryableFault("timeout", f"no answer within api.timeout_s={timeout}s") from None
        except requests.ConnectionError as e:
            raise self._dropped(watch, timeout, type(e).__name__) from None
        with resp:
            self._check_status(resp, number)
            try:
                records = read_records(
                    self.config.format,
                    resp.raw,
                    resp.headers.get("Content-Encoding", ""),
                    self.config.records,
                    chunk_rows,
                    limits,
                    keep,
                )
            except BodyDeadline as e:
                self._fault("timeout")
                raise RetryableFault(
                    "timeout", f"page not complete within api.timeout_s={timeout}s ({e})"
                ) from None
            except BodyDropped as e:
                raise self._dropped(watch, timeout, str(e)) from None
            except BodyTooLarge as e:
                self._fault("too_large")
                raise SourceError(
                    f"page {number} of {self.url} {e}: refused (api.max_response_mb={self.api.max_response_mb}, "
                    f"api.max_decompressed_mb={self.api.max_decompressed_mb}); ask for smaller pages "
                    "(api.per_page) or raise the limits",
                    page=number,
                ) from None
            except BadBody as e:
                self._fault("bad_body")
                raise RetryableFault("bad body", f"page {number} {e}") from None
            self.stats.bytes += resp.raw.tell() if hasattr(resp.raw, "tell") else 0
        return records, resp

    def _dropped(self, watch: Watch, timeout: float, detail: str) -> RetryableFault:
        """A broken connection: the deadline's doing (a server that trickles), or the network's."""
        if watch.fired:
            self._fault("timeout")
            return RetryableFault(
                "timeout", f"page not complete within api.timeout_s={timeout}s (it trickles)"
            )
        self._fault("connection")
        return RetryableFault("connection", f"connection dropped ({detail})")

    def _check_status(self, resp: requests.Response, number: int) -> None:
        status = resp.status_code
        if status == 200:
            return
        if status in self.policy.retry_statuses:
            self._fault(str(status))
            raise RetryableFault(
                f"HTTP {status}", "server asked to retry", parse_retry_after(resp.headers.get("Retry-After"))
            )
        names = " and ".join(self.auth.env_names) or "no"
        plural = "s" if len(self.auth.env_names) > 1 else ""
        if status in (401, 403):
            raise SourceError(
                f"the API rejected the key (HTTP {status}) at {self.url}: check the {names} "
                f"environment variable{plural} (source.auth)",
                status=status,
                page=number,
            )
        raise SourceError(
            self.auth.redact(
                f"the API answered HTTP {status} for page {number} at {self.url}: "
                f"{_short(resp, self.auth.redact, self.auth.longest)}; check API_BASE_URL, api.endpoint and the window"
            ),
            status=status,
            page=number,
        )

    def _fault(self, kind: str) -> None:
        self.stats.faults[kind] += 1


def _short(resp: requests.Response, redact: Callable[[str], str], longest: int) -> str:
    """The first 200 characters of an error body, secrets masked before it is cut (a key that straddles
    the cut is still masked whole), read no further than that."""
    try:
        head = resp.raw.read(4 * (200 + longest), decode_content=True) or b""
    except Exception:  # noqa: BLE001 (an error body that cannot be read is shown as such)
        head = b""
    text = redact(head.decode("utf-8", "replace").replace("\n", " "))[:200]
    return text or "(empty body)"
