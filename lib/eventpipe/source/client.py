"""Source client: fetches every page of a window with auth, limits, pacing and retries.

The page strategy (``paginators``), the response format (``formats``) and how the window is sent
(``window``) are chosen by ``config.SourceConfig``; this client never changes to add one. The retry
policy is data (``retry``), applied by tenacity. For every strategy the client refuses a request to
another host, a request it already made (a repeating cursor or next link, unless
``source.paginator.repeat: end`` reads it as the end), a page identical to the one before, and more
than ``api.max_pages`` pages. An answer that lacks what a configured path names fails at once
(``ResponseShapeError``): retrying cannot change the configuration. No secret ever appears in a message.

With ``api.concurrency`` above 1, up to that many requests are in flight (``concurrent``): slices at
once, and pages fetched ahead where the paginator can say the next request; the pages still come out
in the order a sequential run reads them.
"""

from __future__ import annotations

import copy
import logging
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_before_delay

from ..errors import ResponseShapeError, RetriesExhausted, SourceError
from ..jsonio import loads
from ..settings import ApiSettings, Redactor
from ..words import counted
from .concurrent import Cancelled, Gate, SliceBuffer
from .config import SourceConfig
from .deadline import Watch, deadline, mount
from .formats import BadBody, BodyDeadline, BodyDropped, BodyTooLarge, Limits, Records, read_records
from .paginators import PageShapeError, Paginator, PathMismatch, Request, Response
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
    ahead_unused: int = 0  # pages fetched ahead that the answers did not lead to (past the last page)
    faults: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pages": self.pages,
            "items": self.items,
            "attempts": self.attempts,
            "retries": self.retries,
            "bytes": self.bytes,
            "ahead_unused": self.ahead_unused,
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


@dataclass
class _Pending:
    """A page asked for: the request, the paginator as it was before the answer, the answer to come."""

    request: Request
    before: Paginator
    future: Future


def _done(fn: Callable[..., Any], *args: Any) -> Future:
    """``fn(*args)`` run now, as a finished future (the sequential client's way of asking)."""
    future: Future = Future()
    try:
        future.set_result(fn(*args))
    except BaseException as e:  # noqa: BLE001 (handed on whole, as a pool's future would)
        future.set_exception(e)
    return future


def connection_failure(e: BaseException, url: str) -> str | None:
    """What a failed connection to ``url`` was, in words (refused, unknown host, reset), from the exceptions
    requests and urllib3 wrap around the socket's; None when it says nothing clearer than "dropped"."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    where = f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    seen: set[int] = set()
    todo: list[Any] = [e]
    while todo:
        x = todo.pop()
        if not isinstance(x, BaseException) or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, ConnectionRefusedError):
            return f"connection refused by {where} — is the API running? check api.base_url"
        if isinstance(x, socket.gaierror):
            return f"cannot find the host {host} ({x.strerror}) — check api.base_url"
        if isinstance(x, ConnectionResetError):
            return f"connection reset by {where}"
        todo += [x.__cause__, x.__context__, getattr(x, "reason", None), *x.args]
    return None


class SourceClient:
    """Fetches every page of ``[since, until)`` as ``config`` describes, with limits and retries."""

    def __init__(self, base_url: str, config: SourceConfig, api: ApiSettings):
        self.url = base_url.rstrip("/") + api.endpoint
        self.origin = _origin(self.url)
        self.api = api
        self.config = config
        self.auth = config.auth
        self.redactor = config.redactor
        self.policy = RetryPolicy.from_settings(api)
        self._local = threading.local()
        self.session = self._new_session()  # this thread's; each worker thread makes its own like it
        self._local.session = self.session
        self.stats = FetchStats()
        self._lock = threading.Lock()  # stats and the page count, shared by the workers
        self._accepted = 0
        self._interval = max(
            api.min_interval_s, 1 / api.max_requests_per_s if api.max_requests_per_s else 0.0
        )
        self.gate = Gate(self._interval)

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        mount(session)
        session.headers["Accept"] = "application/json"
        session.headers.update(self.config.auth.headers)
        if self.config.auth.basic:
            session.auth = self.config.auth.basic
        session.trust_env = False  # no .netrc credentials or proxies from the environment
        main = getattr(self, "session", None)
        if main is not None:  # a worker's session: the same hooks as the client's (bench counts requests)
            session.hooks = {k: list(v) for k, v in main.hooks.items()}
        return session

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._new_session()
        return session

    def describe(self) -> str:
        return f"{self.config.paginator_type} pages of {self.config.format} at {self.url}, records at {self.config.records!r}"

    def pages(
        self, since: datetime, until: datetime, chunk_rows: int = 100_000, spill_dir: Path | None = None
    ) -> Iterator[Page]:
        """Every page of every slice of the window, in API order (slice by slice, page by page), however many
        requests are in flight. ``spill_dir`` holds the pages of slices read ahead of the one being handed on."""
        self.gate = Gate(self._interval)  # a fresh stop, pause and budget for this window
        self._accepted = 0
        slices = self.config.window.slices(since, until)
        records: Iterator[tuple[list[bytes], list[int]]]
        if self.api.concurrency <= 1:
            records = (
                (r.chunks, r.counts) for a, b in slices for r in self._slice(a, b, chunk_rows, _done, 1)
            )
        else:
            records = self._concurrent(slices, chunk_rows, spill_dir)
        for number, (chunks, counts) in enumerate(records, start=1):
            yield Page(number, chunks, counts)

    def _concurrent(
        self, slices: list[tuple[datetime, datetime]], chunk_rows: int, spill_dir: Path | None
    ) -> Iterator[tuple[list[bytes], list[int]]]:
        """Up to ``api.concurrency`` requests in flight over up to that many slices; pages handed on in order."""
        c = self.api.concurrency
        depth = max(1, -(-c // len(slices)))  # one slice: c pages ahead; c slices or more: one page each
        cond = threading.Condition()
        failure: list[BaseException] = []
        buffers = [SliceBuffer(cond, failure, spill_dir) for _ in slices]
        fetchers = ThreadPoolExecutor(c, thread_name_prefix="eventpipe-fetch")
        runners = ThreadPoolExecutor(min(c, len(slices)), thread_name_prefix="eventpipe-slice")

        def run(i: int) -> None:
            a, b = slices[i]
            try:
                for records in self._slice(a, b, chunk_rows, fetchers.submit, depth):
                    buffers[i].put(records.chunks, records.counts)
                buffers[i].finish()
            except BaseException as e:  # noqa: BLE001 (handed to the writer, which raises it)
                buffers[i].fail(e)
                self.gate.stop()

        started = min(c, len(slices))  # at most c slices run, and so at most c are buffered
        complete = False
        try:
            for i in range(started):
                runners.submit(run, i)
            for buffer in buffers:
                yield from buffer.drain()
                buffer.close()
                if started < len(slices):
                    runners.submit(run, started)
                    started += 1
            complete = True
        finally:
            if not complete:  # a failure, or a writer that stopped: no more requests, cut those in flight
                self.gate.stop()
            runners.shutdown(wait=True, cancel_futures=True)
            fetchers.shutdown(wait=True, cancel_futures=True)
            for buffer in buffers:
                buffer.close()

    def _slice(
        self,
        since: datetime,
        until: datetime,
        chunk_rows: int,
        submit: Callable[..., Future],
        depth: int,
    ) -> Iterator[Records]:
        """One slice's pages in order, with up to ``depth`` requests in flight when the paginator can say the
        next request before the answer (a page fetched ahead is used only if the answer led to it). Nothing
        is fetched ahead before the slice's first page has answered: a refused key or a one-page slice
        costs one request, as it does sequentially."""
        request = Request(self.url, {**self.config.params, **self.config.window.params(since, until)})
        paginator = self.config.paginator()
        paginator.init_request(request)
        asked: set[str] = set()
        previous: list[bytes] | bytes = b""
        ahead: deque[_Pending] = deque()
        n = 0

        def ask(req: Request, before: Paginator, number: int) -> _Pending:
            req = Request(req.url, dict(req.params))
            return _Pending(req, before, submit(self._fetch_page, req, copy.copy(before), number, chunk_rows))

        try:
            while True:
                if not self._check_request(request, asked):
                    return
                n += 1
                number = self._accepted + 1 if depth == 1 and self.api.concurrency <= 1 else n
                if ahead and ahead[0].request == request:
                    pending = ahead.popleft()
                else:
                    self._drop(ahead)
                    pending = ask(request, copy.copy(paginator), number)
                last = ahead[-1] if ahead else pending
                while (
                    n > 1  # once the slice has answered
                    and len(ahead) < depth - 1
                    and self._accepted + len(ahead) + 2 <= self.api.max_pages  # never past the backstop
                    and not self.gate.stopped
                ):
                    guess = last.before.predict(last.request)
                    if guess is None:
                        break
                    last = ask(guess[0], guess[1], number + len(ahead) + 1)
                    ahead.append(last)
                records, after = pending.future.result()
                page = records.identity()
                if records.n and page == previous:
                    raise SourceError(
                        self.redactor.redact(
                            f"page {number} of {self.url} holds exactly the records of the page before: the API "
                            "repeats itself (has_more or a next link that never ends); the run stops instead of "
                            "looping"
                        ),
                        page=number,
                    )
                previous = page
                with self._lock:
                    self._accepted += 1
                    self.stats.pages += 1
                    self.stats.items += records.n
                yield records
                if not after.has_next:
                    return
                paginator = after
                paginator.update_request(request)
        finally:
            self._drop(ahead)

    def _check_request(self, request: Request, asked: set[str]) -> bool:
        """Refuse another host, a request already made, and more than ``api.max_pages`` pages; False when a
        request already made is the end of the data (``source.paginator.repeat: end``)."""
        if _origin(request.url) != self.origin:
            scheme, host, port = _origin(request.url)
            raise SourceError(
                f"refused to follow a next link to {scheme}://{host}:{port}, not the configured "
                f"{self.origin[0]}://{self.origin[1]}:{self.origin[2]}: credentials are only ever sent to the "
                "configured host"
            )
        key = request.url + "?" + urlencode(sorted((k, str(v)) for k, v in request.params.items()))
        if key in asked:
            if self.config.repeat_ends:
                log.info("the API sent the same cursor or next link again: the end of the data (repeat: end)")
                return False
            raise SourceError(
                self.redactor.redact(
                    f"the API sent the same cursor or next link again ({key[:120]}): the run stops instead of "
                    "reading the same page forever (source.paginator.repeat: end reads it as the end of the "
                    "data, for an API known to do that)"
                )
            )
        asked.add(key)
        if self._accepted >= self.api.max_pages:
            raise SourceError(
                f"more than api.max_pages={self.api.max_pages} pages for one run at {self.url}: the API may be "
                "looping; raise api.max_pages if the window really is that large"
            )
        return True

    def _fetch_page(
        self, request: Request, paginator: Paginator, number: int, chunk_rows: int
    ) -> tuple[Records, Paginator]:
        """One page with its retries; the paginator (a copy) comes back having read the answer."""
        return self._fetch_with_retries(request, paginator, number, chunk_rows), paginator

    def _fetch_with_retries(
        self, request: Request, paginator: Paginator, number: int, chunk_rows: int
    ) -> Records:
        retrying = Retrying(
            stop=stop_after_attempt(self.policy.max_retries + 1) | stop_before_delay(self.policy.budget_s),
            wait=self.policy.wait,
            retry=retry_if_exception_type(RetryableFault),
            before_sleep=self._before_sleep,
            sleep=self.gate.sleep,
            reraise=True,
        )
        try:
            return retrying(self._fetch_once, request, paginator, number, chunk_rows)
        except RetryableFault as e:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise RetriesExhausted(
                self.redactor.redact(
                    f"page {number} of {self.url} still failing after {counted(attempts, 'attempt')} (last: {e}); "
                    f"the run stops here and the next run re-reads this window. Raise api.max_retries "
                    f"or api.retry_budget_s if the API is known to be slow to recover"
                ),
                page=number,
                attempts=attempts,
                last_error=self.redactor.redact(str(e)),
            ) from None

    def _before_sleep(self, state: RetryCallState) -> None:
        with self._lock:
            self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "page %s attempt %d failed (%s); retrying in %.2fs",
            state.args[2],
            state.attempt_number,
            self.redactor.redact(str(exc)),
            state.upcoming_sleep,
        )

    def _fetch_once(self, request: Request, paginator: Paginator, number: int, chunk_rows: int) -> Records:
        self.gate.wait()  # the shared pause (Retry-After), the shared budget, the stop of a failed extract
        with self._lock:
            self.stats.attempts += 1
        timeout = self.api.timeout_s
        with deadline(timeout) as watch:  # headers and body together, however slowly they trickle
            self.gate.track(watch)
            try:
                records, resp = self._get(request, paginator.body_paths, number, chunk_rows, timeout, watch)
            finally:
                self.gate.untrack(watch)
        try:
            paginator.update_state(Response(resp.url, resp.headers, records.body, records.n))
        except PathMismatch as e:
            raise self._mismatch(e, number) from None
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
            resp = self._session().get(request.url, params=params, timeout=timeout, stream=True)
        except requests.Timeout:
            self._fault("timeout")
            raise RetryableFault("timeout", f"no answer within api.timeout_s={timeout}s") from None
        except requests.ConnectionError as e:
            raise self._dropped(
                watch, timeout, type(e).__name__, connection_failure(e, request.url)
            ) from None
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
            except PathMismatch as e:
                raise self._mismatch(e, number) from None
            except BadBody as e:
                self._fault("bad_body")
                raise RetryableFault("bad body", f"page {number} {e}") from None
            with self._lock:
                self.stats.bytes += resp.raw.tell() if hasattr(resp.raw, "tell") else 0
        return records, resp

    def _mismatch(self, e: PathMismatch, number: int) -> ResponseShapeError:
        """A body the configuration does not fit: one request was enough to know, so no retry."""
        return ResponseShapeError(
            self.redactor.redact(
                f"page {number} of {self.url} {e}: the configuration does not match what the API sends, so the "
                f"run stops without retrying; fix {e.setting} (`source check` shows a page)"
            ),
            setting=e.setting,
            path=e.path,
            page=number,
        )

    def _dropped(self, watch: Watch, timeout: float, detail: str, said: str | None = None) -> RetryableFault:
        """A broken connection: the deadline's doing (a server that trickles), the extract's stop, or the network's
        (``said``: what the network said, when it said something clearer than "dropped")."""
        if self.gate.stopped:
            raise Cancelled("the extract is stopping")
        if watch.fired:
            self._fault("timeout")
            return RetryableFault(
                "timeout", f"page not complete within api.timeout_s={timeout}s (it trickles)"
            )
        self._fault("connection")
        return RetryableFault("connection", said or f"connection dropped ({detail})")

    def _check_status(self, resp: requests.Response, number: int) -> None:
        status = resp.status_code
        if status == 200:
            return
        if status in self.policy.retry_statuses:
            self._fault(str(status))
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            if retry_after is not None:  # asked of every worker, not only of this one
                self.gate.pause(min(retry_after, self.policy.max_wait_s))
            raise RetryableFault(f"HTTP {status}", "server asked to retry", retry_after)
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
            self.redactor.redact(
                f"the API answered HTTP {status} for page {number} at {self.url}: "
                f"{_short(resp, self.redactor)}; check API_BASE_URL, api.endpoint and the window"
            ),
            status=status,
            page=number,
        )

    def _drop(self, ahead: deque[_Pending]) -> None:
        """Pages fetched ahead that the answers did not lead to: cancelled if not yet asked, else left unread
        (counted as ``ahead_unused``)."""
        while ahead:
            if not ahead.pop().future.cancel():
                with self._lock:
                    self.stats.ahead_unused += 1

    def _fault(self, kind: str) -> None:
        with self._lock:
            self.stats.faults[kind] += 1


def _short(resp: requests.Response, redactor: Redactor) -> str:
    """The first 200 characters of an error body, secrets masked before it is cut (a key that straddles
    the cut is still masked whole), read no further than that."""
    try:
        head = resp.raw.read(4 * (200 + redactor.longest + 64), decode_content=True) or b""
    except Exception:  # noqa: BLE001 (an error body that cannot be read is shown as such)
        head = b""
    text = redactor.redact(head.decode("utf-8", "replace").replace("\n", " "))[:200]
    return text or "(empty body)"
