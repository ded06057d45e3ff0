"""Page strategies (dlt's vocabulary): how to ask for the first page and for the next one.

Each strategy is a small class behind ``Paginator``: ``init_request`` shapes the first request,
``update_state`` reads a response (and says whether another page follows), ``update_request`` turns
the request into the next one. Adding one is a class here and a line in ``PAGINATORS``; the client
never changes. Repeating links, cursors and pages are caught by the client, for every strategy.

A body that lacks what a configured path names is a ``PathMismatch``: the configuration does not fit
the API, so the client fails at once instead of retrying. Only a link or cursor that is null, empty
or absent from an object that is there (or from an empty page) means "no more pages".
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from requests.utils import parse_header_links

from ..errors import SettingsError


class PageShapeError(Exception):
    """The body contradicts itself (empty, yet says there is more): retried like any broken body."""


class Missing:
    """The value at a path that is not there (``None`` is JSON's null, which is there)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = Missing()
REPEAT = ("fail", "end")  # source.paginator.repeat: what a cursor or next link sent again means


def locate(body: Any, path: str) -> tuple[Any, bool]:
    """The value at a dotted path (``MISSING`` when absent) and whether the object holding it is there."""
    if path in ("", "$"):
        return body, True
    *parents, last = path.split(".")
    for key in parents:
        if not isinstance(body, dict) or key not in body:
            return MISSING, False
        body = body[key]
    if not isinstance(body, dict):
        return MISSING, False
    return body.get(last, MISSING), True


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, as a user reading the body would say it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    names: dict[type, str] = {dict: "object", list: "array", str: "string"}
    return names.get(type(value), type(value).__name__)


def keys_found(body: Any, path: str) -> str:
    """The keys of the deepest object along ``path`` that the body has (what a user compares the path to)."""
    node, where = body, ""
    for key in () if path in ("", "$") else path.split(".")[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(key), dict):
            break
        node, where = node[key], f"{where}.{key}" if where else key
    if not isinstance(node, dict):
        return f"the body is {'an' if json_type(node)[0] in 'aeiou' else 'a'} {json_type(node)}"
    names = ", ".join(list(node)[:12]) + (", …" if len(node) > 12 else "") if node else "none"
    return f"top-level keys: {names}" if not where else f"keys under {where!r}: {names}"


class PathMismatch(Exception):
    """The body lacks what a configured path names, or holds the wrong type there: a configuration error."""

    def __init__(self, label: str, setting: str, path: str, wanted: str, body: Any):
        value, _ = locate(body, path)
        if value is MISSING:
            problem = f"has no {wanted} at the {label} {path!r}"
        else:
            problem = f"holds {json_type(value)} {_show(value)}, not a {wanted}, at the {label} {path!r}"
        super().__init__(f"{problem} ({setting}; {keys_found(body, path)})")
        self.setting, self.path = setting, path


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "{…}" if isinstance(value, dict) else "[…]"
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


@dataclass
class Request:
    """One request: its URL and query parameters (a next link carries its own, so it clears them)."""

    url: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Response:
    """What a paginator may look at: the URL asked, the headers, the parsed body (JSON only) and its record count."""

    url: str
    headers: Mapping[str, str]
    body: Any
    n_items: int


def find(body: Any, path: str) -> Any:
    """The value at a dotted path of a JSON document (``$`` is the document); None when absent."""
    value, _ = locate(body, path)
    return None if value is MISSING else value


class Paginator(ABC):
    """How to ask for the first page and the next one."""

    has_next: bool = True

    @property
    def body_paths(self) -> tuple[str, ...]:
        """The paths of the body it reads (all a large body streamed past needs to keep for it)."""
        return ()

    @property
    def needs_body(self) -> bool:
        """Whether it reads the JSON body (so it cannot follow a JSON Lines or zip export)."""
        return bool(self.body_paths)

    def init_request(self, request: Request) -> None:  # noqa: B027 (most strategies send nothing extra)
        """Shape the first request."""

    def predict(self, request: Request) -> tuple[Request, Paginator] | None:
        """The request after ``request`` and the paginator as it will be before its answer, if this one's
        answer is a full page with more to come; None when the next request depends on the answer (cursors,
        links). The client fetches predicted pages ahead and uses one only if the real answer led to it."""
        return None

    @abstractmethod
    def update_state(self, response: Response) -> None:
        """Read a response; set ``has_next``. Raise ``PathMismatch`` when the body lacks what a path names,
        ``PageShapeError`` when it contradicts itself."""

    @abstractmethod
    def update_request(self, request: Request) -> None:
        """Turn ``request`` into the request for the next page."""


@dataclass
class SinglePagePaginator(Paginator):
    """One request answers the whole window (an export)::

    {"results": [{...}, {...}]}      or JSON Lines, or a zip of them
    """

    def update_state(self, response: Response) -> None:
        self.has_next = False

    def update_request(self, request: Request) -> None:
        raise AssertionError("a single page has no next page")


@dataclass
class PageNumberPaginator(Paginator):
    """``?page=1&per_page=100``, ``?page=2``... until ``has_more_path`` says false, the page number reaches
    ``total_path`` (a page count), or (with neither) a page comes back empty::

    {"items": [{...}, {...}], "has_more": true}
    {"results": [{...}], "total_pages": 7}
    """

    page_param: str = "page"
    base_page: int = 1
    size_param: str = "per_page"
    size: int = 100
    has_more_path: str = "has_more"
    total_path: str = ""

    @property
    def body_paths(self) -> tuple[str, ...]:
        return tuple(p for p in (self.has_more_path, self.total_path) if p)

    page: int = 0

    def init_request(self, request: Request) -> None:
        self.page = self.base_page
        request.params[self.page_param] = self.page
        if self.size_param:
            request.params[self.size_param] = self.size

    def update_state(self, response: Response) -> None:
        if self.has_more_path:
            more = find(response.body, self.has_more_path)
            if not isinstance(more, bool):
                raise PathMismatch(
                    "has_more path",
                    "source.paginator.has_more_path",
                    self.has_more_path,
                    "boolean",
                    response.body,
                )
            if more and not response.n_items:
                raise PageShapeError(f"is empty but says {self.has_more_path}=true")
            self.has_next = more
        elif self.total_path:
            total = _total(response.body, self.total_path)
            self.has_next = self.page - self.base_page + 1 < total and response.n_items > 0
        else:
            self.has_next = response.n_items > 0

    def update_request(self, request: Request) -> None:
        self.page += 1
        request.params[self.page_param] = self.page

    def predict(self, request: Request) -> tuple[Request, Paginator] | None:
        nxt = dataclasses.replace(self, page=self.page + 1)
        return Request(request.url, {**request.params, self.page_param: nxt.page}), nxt


@dataclass
class OffsetPaginator(Paginator):
    """``?offset=0&limit=100``, ``?offset=100``... until a page is short, or ``offset`` reaches ``total_path``::

    {"data": [{...}, {...}], "total": 250}
    """

    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = 100
    total_path: str = ""
    offset: int = 0

    @property
    def body_paths(self) -> tuple[str, ...]:
        return (self.total_path,) if self.total_path else ()

    def init_request(self, request: Request) -> None:
        request.params[self.offset_param] = self.offset
        request.params[self.limit_param] = self.limit

    def update_state(self, response: Response) -> None:
        # checked before the offset moves: a page refused here is asked again from the same offset
        offset = self.offset + response.n_items
        has_next = response.n_items >= self.limit
        if self.total_path:
            total = _total(response.body, self.total_path)
            has_next = offset < total and response.n_items > 0
        self.offset, self.has_next = offset, has_next

    def update_request(self, request: Request) -> None:
        request.params[self.offset_param] = self.offset

    def predict(self, request: Request) -> tuple[Request, Paginator] | None:
        nxt = dataclasses.replace(self, offset=self.offset + self.limit)
        return Request(request.url, {**request.params, self.offset_param: nxt.offset}), nxt


def _total(body: Any, path: str) -> int:
    total = find(body, path)
    if not isinstance(total, int) or isinstance(total, bool):
        raise PathMismatch("total path", "source.paginator.total_path", path, "whole number", body)
    return total


def _link(response: Response, path: str, label: str, setting: str, types: tuple[type, ...]) -> Any:
    """The cursor or next link at ``path``; None for the end of the data: null, empty, or absent from an
    object that is there (or from a page without records, which some APIs send bare)."""
    value, parent = locate(response.body, path)
    if value is MISSING and (parent or not response.n_items) or value in (None, ""):
        return None
    if value is MISSING or isinstance(value, bool) or not isinstance(value, types):
        wanted = " or ".join(json_type(t()) for t in types)
        raise PathMismatch(label, setting, path, wanted, response.body)
    return value


@dataclass
class CursorPaginator(Paginator):
    """The body names the next cursor (text or a number); it goes back as a parameter until it is null,
    empty, or absent from its object (``response_metadata`` of ``response_metadata.next_cursor``)::

    {"events": [{...}], "next_cursor": "c2VjcmV0"}
    """

    cursor_path: str = "next_cursor"
    cursor_param: str = "cursor"
    cursor: str | None = None

    @property
    def body_paths(self) -> tuple[str, ...]:
        return (self.cursor_path,)

    def update_state(self, response: Response) -> None:
        value = _link(response, self.cursor_path, "cursor path", "source.paginator.cursor_path", (str, int))
        self.cursor = None if value is None else str(value)
        self.has_next = self.cursor is not None

    def update_request(self, request: Request) -> None:
        request.params[self.cursor_param] = self.cursor


@dataclass
class JSONLinkPaginator(Paginator):
    """The body holds the URL of the next page (absolute, or relative to this one); null, empty or absent
    from its object on the last::

    {"results": [{...}], "next": "https://app.posthog.com/api/projects/1/events?cursor=..."}
    """

    next_url_path: str = "next"
    next_url: str | None = None

    @property
    def body_paths(self) -> tuple[str, ...]:
        return (self.next_url_path,)

    def update_state(self, response: Response) -> None:
        value = _link(
            response, self.next_url_path, "next-link path", "source.paginator.next_url_path", (str,)
        )
        self.next_url = None if value is None else urljoin(response.url, value)
        self.has_next = self.next_url is not None

    def update_request(self, request: Request) -> None:
        request.url, request.params = str(self.next_url), {}


@dataclass
class HeaderLinkPaginator(Paginator):
    """RFC 8288: the ``Link`` header names the next page (json-server, GitHub)::

    Link: <http://host/events?_page=2&_limit=100>; rel="next", <http://host/events?_page=9>; rel="last"
    """

    links_next_key: str = "next"
    next_url: str | None = None

    def update_state(self, response: Response) -> None:
        self.next_url = None
        for link in parse_header_links(response.headers.get("Link", "")):
            if link.get("rel") == self.links_next_key and link.get("url"):
                self.next_url = urljoin(response.url, link["url"])
        self.has_next = self.next_url is not None

    def update_request(self, request: Request) -> None:
        request.url, request.params = str(self.next_url), {}


PAGINATORS: dict[str, type[Paginator]] = {
    "page_number": PageNumberPaginator,
    "offset": OffsetPaginator,
    "cursor": CursorPaginator,
    "json_link": JSONLinkPaginator,
    "header_link": HeaderLinkPaginator,
    "single_page": SinglePagePaginator,
}
_STATE = {"page", "offset", "cursor", "next_url"}  # fields a strategy keeps for itself
_SIZE = {"page_number": "size", "offset": "limit"}  # the option api.per_page fills when not given


def paginator_factory(spec: Mapping[str, Any], per_page: int) -> Callable[[], Paginator]:
    """``source.paginator`` -> a function that makes a fresh paginator (one per window slice)."""
    kind = spec.get("type", "page_number")
    if kind not in PAGINATORS:
        raise SettingsError(f"source.paginator.type {kind!r} is unknown: use one of {', '.join(PAGINATORS)}")
    cls = PAGINATORS[kind]
    options = {k: v for k, v in spec.items() if k not in ("type", "repeat")}
    allowed = [f.name for f in dataclasses.fields(cls) if f.name not in _STATE]  # type: ignore[arg-type]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise SettingsError(
            f"source.paginator: {kind} takes {', '.join([*allowed, 'repeat'])}, not {unknown[0]!r}"
        )
    if kind in _SIZE:
        options.setdefault(_SIZE[kind], per_page)
    try:
        cls(**options)
    except TypeError as e:
        raise SettingsError(f"source.paginator: {e}") from None
    return lambda: cls(**options)


def repeat_ends(spec: Mapping[str, Any]) -> bool:
    """``source.paginator.repeat``: whether a cursor or next link the API sends again ends the data
    (``end``, for APIs known to do that on their last page) instead of failing the run (``fail``)."""
    repeat = spec.get("repeat", "fail")
    if repeat not in REPEAT:
        raise SettingsError(f"source.paginator.repeat {repeat!r}: use {' or '.join(REPEAT)}")
    return repeat == "end"
