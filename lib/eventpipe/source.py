"""Source: a small REST client for the paginated events API, streaming pages to Parquet.

The page strategy is pluggable (the contract's ``page``/``has_more`` first);
the retry policy is data (retryable statuses, cap, overall budget), applied by
tenacity. Every attempt is counted, and the API key never appears in a message.
"""

from __future__ import annotations

import logging
import random
import time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_before_delay

from .errors import RetriesExhausted, SourceError
from .inject import checkpoint
from .jsonio import loads
from .settings import ApiSettings, Secret, iso

log = logging.getLogger(__name__)

# one row per page: the body exactly as received (parsed again, column-wise, by the transform)
RAW_SCHEMA = pa.schema([("page", pa.int32()), ("first_seq", pa.int64()), ("n", pa.int32()), ("body", pa.binary())])


class RetryableFault(Exception):
    """One attempt failed in a way that a later attempt may not (429, 5xx, timeout, broken body)."""

    def __init__(self, kind: str, detail: str, retry_after: float | None = None):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """Which answers are retried, how long to wait, and when to give up."""

    max_retries: int = 5
    initial_s: float = 0.5
    max_wait_s: float = 30.0
    budget_s: float = 300.0
    retry_statuses: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})

    @classmethod
    def from_settings(cls, api: ApiSettings) -> "RetryPolicy":
        return cls(api.max_retries, api.backoff_initial_s, api.backoff_max_s, api.retry_budget_s)

    def wait(self, state: RetryCallState) -> float:
        """Exponential backoff with full jitter; a server's ``Retry-After`` wins when present."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableFault) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.max_wait_s)
        ceiling = min(self.max_wait_s, self.initial_s * 2 ** (state.attempt_number - 1))
        return random.uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds or as an HTTP date -> seconds to wait."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class Paginator(ABC):
    """How to ask for the first page and the next one."""

    @abstractmethod
    def first(self) -> dict[str, Any]: ...

    @abstractmethod
    def next(self, params: dict[str, Any], body: dict[str, Any], n_items: int) -> dict[str, Any] | None: ...


@dataclass
class PageNumberPaginator(Paginator):
    """``?page=1&per_page=100`` ... until the body says ``"has_more": false``::

        {"items": [{...}, {...}], "has_more": true}
    """

    per_page: int = 100
    has_more_field: str = "has_more"

    def first(self) -> dict[str, Any]:
        return {"page": 1, "per_page": self.per_page}

    def next(self, params: dict[str, Any], body: dict[str, Any], n_items: int) -> dict[str, Any] | None:
        if not body[self.has_more_field]:
            return None
        return {**params, "page": params["page"] + 1}


@dataclass
class FetchStats:
    pages: int = 0
    items: int = 0
    attempts: int = 0
    retries: int = 0
    bytes: int = 0
    faults: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"pages": self.pages, "items": self.items, "attempts": self.attempts,
                "retries": self.retries, "bytes": self.bytes, "faults": dict(self.faults)}


@dataclass
class Page:
    number: int
    items: list[Any]
    body: bytes


class SourceClient:
    """Fetches every page of ``[since, until)`` with bearer auth, timeouts and retries."""

    def __init__(self, base_url: str, api_key: Secret, api: ApiSettings, session: requests.Session | None = None):
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
                page=page, attempts=attempts, last_error=str(e),
            ) from None

    def _before_sleep(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        wait = state.upcoming_sleep
        log.warning("page %s attempt %d failed (%s); retrying in %.2fs", state.args[0].get("page"),
                    state.attempt_number, exc, wait)

    def _fetch_once(self, params: dict[str, Any]) -> tuple[dict[str, Any], list[Any], bytes]:
        self.stats.attempts += 1
        page = params.get("page")
        try:
            resp = self.session.get(self.url, params=params, timeout=self.api.timeout_s)
            content = resp.content
        except requests.Timeout:
            self._fault("timeout")
            raise RetryableFault("timeout", f"no answer within api.timeout_s={self.api.timeout_s}s") from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as e:
            self._fault("connection")
            raise RetryableFault("connection", f"connection dropped ({type(e).__name__})") from None
        status = resp.status_code
        if status in self.policy.retry_statuses:
            self._fault(str(status))
            raise RetryableFault(f"HTTP {status}", "server asked to retry",
                                 parse_retry_after(resp.headers.get("Retry-After")))
        if status in (401, 403):
            raise SourceError(
                f"the API rejected the key (HTTP {status}) at {self.url}: check the API_KEY environment variable",
                status=status, page=page)
        if status != 200:
            raise SourceError(
                f"the API answered HTTP {status} for page {page} at {self.url}: "
                f"{_short(content)}; check API_BASE_URL, api.endpoint and the window", status=status, page=page)
        self.stats.bytes += len(content)
        try:
            body = loads(content)
        except ValueError:
            self._fault("bad_json")
            raise RetryableFault("bad body", f"page {page} is not valid JSON ({len(content)} bytes)") from None
        items = body.get(self.api.items_field) if isinstance(body, dict) else None
        if not isinstance(items, list) or not isinstance(body.get(self.api.has_more_field), bool):
            self._fault("bad_shape")
            raise RetryableFault(
                "bad body", f"page {page} lacks a list {self.api.items_field!r} or a boolean {self.api.has_more_field!r}")
        if not items and body[self.api.has_more_field]:
            self._fault("bad_shape")
            raise RetryableFault("bad body", f"page {page} is empty but says {self.api.has_more_field}=true")
        return body, items, content

    def _fault(self, kind: str) -> None:
        self.stats.faults[kind] += 1


def _short(content: bytes) -> str:
    text = content[:200].decode("utf-8", "replace").replace("\n", " ")
    return text or "(empty body)"


@dataclass
class ExtractResult:
    since: str
    until: str
    records: int
    parts: list[str]
    seconds: float
    stats: dict[str, Any]


def extract_window(client: SourceClient, since: datetime, until: datetime, raw_dir: Path,
                   chunk_rows: int) -> ExtractResult:
    """Stream every page of the window into ``raw_dir/part-*.parquet``: page bodies as received, API order kept."""
    started = time.perf_counter()
    raw_dir.mkdir(parents=True, exist_ok=True)
    for old in raw_dir.glob("part-*.parquet"):
        old.unlink()
    parts: list[str] = []
    rows: dict[str, list[Any]] = {"page": [], "first_seq": [], "n": [], "body": []}
    buffered = 0
    seq = 0

    def flush() -> None:
        if not rows["page"]:
            return
        path = raw_dir / f"part-{len(parts):05d}.parquet"
        pq.write_table(pa.Table.from_pydict(rows, schema=RAW_SCHEMA), path, compression="none")
        parts.append(str(path))
        for v in rows.values():
            v.clear()

    for page in client.pages(since, until):
        n = len(page.items)
        if n:
            rows["page"].append(page.number)
            rows["first_seq"].append(seq)
            rows["n"].append(n)
            rows["body"].append(page.body)
            seq += n
            buffered += n
        if buffered >= chunk_rows:
            flush()
            buffered = 0
        log.debug("page %d: %d items", page.number, n)
        checkpoint("extract.page")
    flush()
    elapsed = time.perf_counter() - started
    log.info("extracted %d records in %d pages (%d attempts) in %.2fs", seq, client.stats.pages,
             client.stats.attempts, elapsed)
    return ExtractResult(iso(since), iso(until), seq, parts, elapsed, client.stats.as_dict())


def read_raw_part(path: str | Path, items_field: str) -> tuple[list[Any], "list[int]"]:
    """A raw part -> (items in API order, their sequence numbers)."""
    table = pq.read_table(path)
    items: list[Any] = []
    seqs: list[int] = []
    for first, n, body in zip(table["first_seq"].to_pylist(), table["n"].to_pylist(), table["body"].to_pylist()):
        page_items = loads(body)[items_field]
        if len(page_items) != n:
            raise ValueError(f"{path}: page holds {len(page_items)} items, expected {n}")
        items.extend(page_items)
        seqs.extend(range(first, first + n))
    return items, seqs


def write_raw_items(raws: list[bytes], path: Path, items_field: str) -> None:
    """Items already serialised (e.g. dead letters) -> one raw part, as if one page had served them."""
    body = b'{"' + items_field.encode() + b'":[' + b",".join(raws) + b'],"has_more":false}'
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pydict({"page": [1], "first_seq": [0], "n": [len(raws)], "body": [body]},
                                        schema=RAW_SCHEMA), path)
