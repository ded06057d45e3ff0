"""``report --serve``: the reports folder over HTTP on 127.0.0.1, nothing outside it."""

from __future__ import annotations

import functools
import posixpath
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

HOST = "127.0.0.1"


class ReportsHandler(SimpleHTTPRequestHandler):
    """Static files under one folder; a path that climbs out of it (``..``, encoded or not) gets 403."""

    # an executed notebook is JSON: served as such, a browser shows it instead of downloading an unknown type
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".ipynb": "application/json"}

    def send_head(self):  # type: ignore[override]
        raw = unquote(urlsplit(self.path).path)
        if ".." in raw.split("/") or "\\" in raw or "\x00" in raw:
            self.send_error(403, "outside the reports folder")
            return None
        root = Path(self.directory).resolve()
        target = (root / posixpath.normpath(raw).lstrip("/")).resolve()
        if target != root and root not in target.parents:
            self.send_error(403, "outside the reports folder")
            return None
        return super().send_head()

    def end_headers(self) -> None:
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass


def make_server(reports_dir: Path, port: int = 0) -> ThreadingHTTPServer:
    """A server bound to 127.0.0.1 (port 0: a free one); the caller runs ``serve_forever``."""
    handler = functools.partial(ReportsHandler, directory=str(reports_dir.resolve()))
    return ThreadingHTTPServer((HOST, port), handler)
