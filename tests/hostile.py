"""A small hostile HTTP server on loopback: each test says how it answers (loops, bombs, trickles, lies).

Also the hostile bodies more than one test sends: JSON nested deeper than the parser allows, in a page.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import orjson

Answer = Callable[["Handler", dict[str, str]], None]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Hostile

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        q = {k: v[-1] for k, v in parse_qs(urlparse(self.path).query).items()}
        self.server.seen.append((self.path, dict(self.headers)))
        self.server.answer(self, q)

    def send(self, body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class Hostile(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answer: Answer):
        super().__init__(("127.0.0.1", 0), Handler)
        self.answer = answer
        self.seen: list[tuple[str, dict[str, str]]] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Hostile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
        self.server_close()


def nested_too_deep(depth: int = 1100) -> bytes:
    """A JSON value nested ``depth`` levels: deeper than the JSON parser allows."""
    return b'{"a": ' * depth + b"1" + b"}" * depth


def deep_record(user: str, timestamp: int) -> bytes:
    """A click whose properties nest too deep (as bytes: no JSON library would write it)."""
    head = b'{"user_id": "%s", "event": "click", "timestamp": %d, "properties": ' % (user.encode(), timestamp)
    return head + nested_too_deep() + b"}"


def contract_page(*items: dict | bytes) -> bytes:
    """The last page of the contract holding these items (dicts, or bytes sent as they are)."""
    body = b",".join(i if isinstance(i, bytes) else orjson.dumps(i) for i in items)
    return b'{"items": [' + body + b'], "has_more": false}'
