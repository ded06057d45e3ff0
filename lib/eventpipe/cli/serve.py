"""Serving from the command line (``report --serve``, ``demo-api``): say where, serve until Ctrl-C, close."""

from __future__ import annotations

from typing import Any


def serve_until_interrupted(server: Any, where: str) -> None:
    """Print ``where`` (one line), serve until Ctrl-C or a handler's KeyboardInterrupt, then close the socket."""
    print(f"{where}; Ctrl-C stops it", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
