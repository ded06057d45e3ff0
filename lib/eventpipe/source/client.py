"""Source client: fetches every page of a window with auth, timeouts and retries.

The page strategy is pluggable (``paginators``); the retry policy is data (``retry``),
applied by tenacity. Every attempt is counted, and the API key never appears in a message.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_before_delay

from ..errors import RetriesExhausted, SourceError
from ..jsonio import loads
from ..settings import ApiSettings, Secret, iso
from .paginators import PageNumberPaginator, Paginator
from .retry import RetryableFault, RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)


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
    number: int
    items: list[Any]
    body: bytes


class SourceClient:
    """Fetches every page of ``[since, until)`` with bearer auth, timeouts and retries."""

    def __init__(
        self, base_url: str, api_key: Secret, api: ApiSettings, session: requests.Session | None = None
    ):
        self.url = base_url.rstrip("/") + api.endpoint
        self.api = api
        self.policy = RetryPolicy.from_settings(api)
        self.paginator: Paginator = PageNumberPaginator(api.per_page, api.has_more_field)
        self.session = session or requests.Session()
        self.session.headers["Accept"] = "application/json"
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key.reveal()}"
        self.stats = FetchStats()

    def pages(self, since: datetime, until: datetime) -> Iterator[Page]:
        window = {"since": iso(since), "until": iso(until)}
        params: dict[str, Any] | None = self.paginator.first()
        while params is not None:
            body, items, content = self._fetch_with_retries({**params, **window})
            self.stats.pages += 1
            self.stats.items += len(items)
            yield Page(params["page"], items, content)
            params = self.paginator.next(params, body, len(items))

    def _fetch_with_retries(self, params: dict[str, Any]) -> tuple[dict[str, Any], list[Any], bytes]:
        page = params.get("page")
        retrying = Retrying(
            stop=stop_after_attempt(self.policy.max_retries + 1) | stop_before_delay(self.policy.budget_s),
            wait=self.policy.wait,
            retry=retry_if_exception_type(RetryableFault),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            return retrying(self._fetch_once, params)
        except RetryableFault as e:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise RetriesExhausted(
                f"page {page} of {self.url} still failing after {attempts} attempts (last: {e}); "
                f"the run stops here and the next run re-reads this window. Raise api.max_retries "
                f"or api.retry_budget_s if the API is known to be slow to recover",
                page=page,
                attempts=attempts,
                last_error=str(e),
            ) from None

    def _before_sleep(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        wait = state.upcoming_sleep
        log.warning(
            "page %s attempt %d failed (%s); retrying in %.2fs",
            state.args[0].get("page"),
            state.attempt_number,
            exc,
            wait,
        )

    def _fetch_once(self, params: dict[str, Any]) -> tuple[dict[str, Any], list[Any], bytes]:
        self.stats.attempts += 1
        page = params.get("page")
        try:
            resp = self.session.get(self.url, params=params, timeout=self.api.timeout_s)
            content = resp.content
        except requests.Timeout:
            self._fault("timeout")
            raise RetryableFault("timeout", f"no answer within api.timeout_s={self.api.timeout_s}s") from None
        except (
            requests.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as e:
            self._fault("connection")
            raise RetryableFault("connection", f"connection dropped ({type(e).__name__})") from None
        status = resp.status_code
        if status in self.policy.retry_statuses:
            self._fault(str(status))
            raise RetryableFault(
                f"HTTP {status}", "server asked to retry", parse_retry_after(resp.headers.get("Retry-After"))
            )
        if status in (401, 403):
            raise SourceError(
                f"the API rejected the key (HTTP {status}) at {self.url}: check the API_KEY environment variable",
                status=status,
                page=page,
            )
        if status != 200:
            raise SourceError(
                f"the API answered HTTP {status} for page {page} at {self.url}: "
                f"{_short(content)}; check API_BASE_URL, api.endpoint and the window",
                status=status,
                page=page,
            )
        self.stats.bytes += len(content)
        try:
            body = loads(content)
        except ValueError:
            self._fault("bad_json")
            raise RetryableFault(
                "bad body", f"page {page} is not valid JSON ({len(content)} bytes)"
            ) from None
        items = body.get(self.api.items_field) if isinstance(body, dict) else None
        if not isinstance(items, list) or not isinstance(body.get(self.api.has_more_field), bool):
            self._fault("bad_shape")
            raise RetryableFault(
                "bad body",
                f"page {page} lacks a list {self.api.items_field!r} or a boolean {self.api.has_more_field!r}",
            )
        if not items and body[self.api.has_more_field]:
            self._fault("bad_shape")
            raise RetryableFault("bad body", f"page {page} is empty but says {self.api.has_more_field}=true")
        return body, items, content

    def _fault(self, kind: str) -> None:
        self.stats.faults[kind] += 1


def _short(content: bytes) -> str:
    text = content[:200].decode("utf-8", "replace").replace("\n", " ")
    return text or "(empty body)"
