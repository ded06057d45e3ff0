"""Wire formats of the demo API: the same seeded events as each preset's real API would send them.

A style renders one event of the contract (``data.Generated.body``) in its API's field names and says
how a request names its window and page. Each preset under ``params/sources/`` reads one style back,
so a test can ask for the exact table whatever the wire format.
"""

from __future__ import annotations

import gzip
import io
import re
import zipfile
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

STYLES = ("contract", "posthog", "mixpanel", "amplitude", "json-server", "offset", "cursor")
ENDPOINTS = {
    "contract": "/analytics",
    "posthog": "/api/projects/1/events",
    "mixpanel": "/api/2.0/export",
    "amplitude": "/api/2/export",
    "json-server": "/events",
    "offset": "/v1/events",  # ?offset=&limit= and a total (params/sources/offset.yaml)
    "cursor": "/api/events.list",  # an opaque cursor in response_metadata, as Slack's API (cursor.yaml)
}
EXPORTS = ("mixpanel", "amplitude")  # styles whose API answers the whole window in one export
BASIC_AUTH = ("mixpanel", "amplitude")  # styles whose API takes a user and a secret
NO_AUTH = ("json-server",)
HEADER_KEY = {"offset": "X-API-Key"}  # styles whose key travels in a header of its own
_ISO_SHAPED = re.compile(r"\d{4}-\d{2}-\d{2}[T ]")


def _ms(value: Any) -> int | None:
    """The instant a contract timestamp denotes, in epoch ms (None for the dirty ones that do not parse)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return round(value) if abs(value) >= 1e11 else round(value * 1000)
    if isinstance(value, str) and _ISO_SHAPED.match(value):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return round(dt.timestamp() * 1000)
    return None


def _as_object(value: Any) -> dict | None:
    """A contract ``properties`` value as an object, when it is one (or JSON text of one, or null)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def posthog(item: Any) -> Any:
    """PostHog's events API: ``distinct_id`` for the user; the rest as is."""
    if not isinstance(item, dict):
        return item
    return {("distinct_id" if k == "user_id" else k): v for k, v in item.items()}


def mixpanel(item: Any) -> Any:
    """Mixpanel's raw export: ``{"event", "properties": {"time" (epoch s), "distinct_id", ...}}``."""
    if not isinstance(item, dict):
        return item
    out: dict[str, Any] = {k: item[k] for k in ("event",) if k in item}
    extra: dict[str, Any] = {}
    if "timestamp" in item:
        ms = _ms(item["timestamp"])
        extra["time"] = item["timestamp"] if ms is None else (ms // 1000 if ms % 1000 == 0 else ms / 1000)
    if "user_id" in item:
        extra["distinct_id"] = item["user_id"]
    if "session_id" in item:
        extra["$session_id"] = item["session_id"]
    props = _as_object(item.get("properties"))
    if props is None:  # properties Mixpanel could not have sent: keep them, and the rest beside them
        out["properties"] = item["properties"]
        out.update(extra)
    else:
        out["properties"] = {**extra, **props}
    return out


def amplitude(item: Any) -> Any:
    """Amplitude's export: ``user_id``, ``event_type``, ``event_time`` (UTC, no offset), ``event_properties``."""
    if not isinstance(item, dict):
        return item
    names = {"event": "event_type", "timestamp": "event_time", "properties": "event_properties"}
    out = {names.get(k, k): v for k, v in item.items()}
    if "event_time" in out:
        ms = _ms(out["event_time"])
        if ms is not None:
            dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
            out["event_time"] = dt.strftime("%Y-%m-%d %H:%M:%S.%f")
    return out


RENDER: dict[str, Callable[[Any], Any]] = {
    "contract": lambda x: x,
    "posthog": posthog,
    "mixpanel": mixpanel,
    "amplitude": amplitude,
    "json-server": lambda x: x,
    "offset": lambda x: x,
    "cursor": lambda x: x,
}
_AS_SENT = ("contract", "json-server", "offset", "cursor")  # styles that send the contract's records


def render(style: str, body: bytes) -> bytes:
    """One contract event body as ``style`` sends it."""
    if style in _AS_SENT:
        return body
    return orjson.dumps(RENDER[style](orjson.loads(body)))


def render_all(style: str, bodies: list[bytes]) -> list[bytes]:
    if style in _AS_SENT:
        return bodies
    fn = RENDER[style]
    return [orjson.dumps(fn(x)) for x in orjson.loads(b"[" + b",".join(bodies) + b"]")]


def parse_date(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)


def parse_hour(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%dT%H").replace(tzinfo=timezone.utc)


def jsonl(bodies: list[bytes]) -> bytes:
    return b"".join(b + b"\n" for b in bodies)


def amplitude_zip(hours: list[tuple[datetime, list[bytes]]]) -> bytes:
    """Amplitude's export archive: one gzipped JSON Lines file per hour, ``<project>_<date>_<hour>#0.json.gz``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for hour, bodies in hours:
            name = f"100/100_{hour:%Y-%m-%d}_{hour.hour}#0.json.gz"
            zf.writestr(name, gzip.compress(jsonl(bodies), mtime=0))
    return buf.getvalue()


HOUR = timedelta(hours=1)
