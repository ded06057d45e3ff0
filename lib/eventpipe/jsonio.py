"""JSON in and out: orjson for speed, the standard library where orjson would lose information."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# orjson turns integers beyond 64 bits into floats; the standard library keeps them exact
_LONG_NUMBER = re.compile(rb"\d{19,}")


def loads(raw: bytes | str) -> Any:
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if _LONG_NUMBER.search(data):
        return json.loads(data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)  # raises the standard ValueError for text that is not JSON


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # e.g. integers beyond 64 bits
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def dumps_bytes(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


JSONDecodeError = ValueError
