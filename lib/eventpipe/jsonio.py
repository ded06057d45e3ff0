"""JSON in and out: msgspec and orjson for speed, the standard library for what they refuse."""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import msgspec
import orjson

# orjson (which writes here) turns integers beyond 64 bits into floats when it reads; msgspec and the
# standard library keep them exact, so reading goes through msgspec.
_decode = msgspec.json.Decoder().decode
_REFUSED = (msgspec.DecodeError, UnicodeError, RecursionError)


def loads(raw: bytes | str) -> Any:
    """JSON text -> Python values, as the standard library's ``json.loads`` reads them.

    msgspec decodes (as fast as orjson here, and exact for integers of any size, which orjson would turn into
    floats); whatever it refuses goes to the standard library, which reads some of it (a lone surrogate, a
    byte-order mark, ``NaN``, ``1e400`` as infinity, deeper nesting) and raises its own ``ValueError`` or
    ``RecursionError`` for the rest."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    try:
        return _decode(data)
    except _REFUSED:
        return json.loads(data)


def loads_plain(text: str) -> Any:
    """``loads(text)`` where msgspec reads ``text`` itself; None where it refuses it (for a caller that sends
    whatever is not the value it wants through ``loads`` anyway: the standard library's cases are rare)."""
    try:
        return _decode(text)
    except _REFUSED:
        return None


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # e.g. integers beyond 64 bits
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def write_text_atomic(
    path: Path, text: str | bytes, before_replace: Callable[[Path], None] | None = None
) -> Path:
    """Write ``text`` to a temporary file beside ``path`` (``.<name>.<pid>.tmp``), then rename it into place:
    a reader never sees half a file. A write that fails (a full disk, a folder that is not writable) removes
    the temporary file before the error goes on, so it leaves neither half a file nor a ``.tmp`` behind.

    A folder removed meanwhile (a report folder deleted mid-run) is created again. ``before_replace`` is
    called with the temporary file once it is written (a fault-injection point)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # parallel backfill workers rebuild the index too
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise
    return path


def write_json_atomic(path: Path, data: Any, before_replace: Callable[[Path], None] | None = None) -> Path:
    """``data`` as indented JSON, written with ``write_text_atomic``."""
    return write_text_atomic(path, json.dumps(data, indent=2, default=str), before_replace)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the automatic cyclic garbage collector: parsed JSON holds no cycles, and refcounting frees it
    (a chunk-by-chunk caller collects the young generations itself after each chunk)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
