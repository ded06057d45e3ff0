"""``report --serve``: the content types the reports folder is served with."""

from __future__ import annotations

import threading
import urllib.request

import pytest

from eventpipe.audit.serve import make_server


@pytest.fixture
def served(tmp_path):
    """The folder ``tmp_path`` served on loopback; yields its base URL."""
    server = make_server(tmp_path, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "name, content_type",
    [
        ("01_extract.ipynb", "application/json"),
        ("run.html", "text/html"),
        ("metrics.json", "application/json"),
    ],
)
def test_each_report_file_is_served_with_its_content_type(tmp_path, served, name, content_type):
    (tmp_path / name).write_text("{}")
    with urllib.request.urlopen(f"{served}/{name}") as response:
        assert response.headers.get_content_type() == content_type
        assert response.headers["X-Content-Type-Options"] == "nosniff"
