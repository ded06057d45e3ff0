"""Wire formats of the demo API: the same seeded events as each preset's real API would send them.

A style renders one event of the contract (``data.Generated.body``) in its API's field names and says
how a request names its window and page. Each preset under ``params/sources/`` reads one style back,
so a test can ask for the exact table whatever the wire format.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from .data import Generated, Truth

STYLES = (
    "contract",
    "posthog",
    "mixpanel",
    "amplitude",
    "json-server",
    "offset",
    "cursor",
    "mixpanel-export",
    "posthog-events",
)
ENDPOINTS = {
    "contract": "/analytics",
    "posthog": "/api/projects/1/events",
    "mixpanel": "/api/2.0/export",
    "amplitude": "/api/2/export",
    "json-server": "/events",
    "offset": "/v1/events",  # ?offset=&limit= and a total (params/sources/offset.yaml)
    "cursor": "/api/events.list",  # an opaque cursor in response_metadata, as Slack's API (cursor.yaml)
    # the presets as shipped: Mixpanel's export with its wire-only keys and both of its auth styles,
    # PostHog's events listing with its record shape (``@current``: the project of the personal API key)
    "mixpanel-export": "/api/2.0/export",
    "posthog-events": "/api/projects/@current/events",
}
PRESETS = {  # the preset under params/sources/ that reads each style
    **{s: s for s in ("contract", "posthog", "mixpanel", "amplitude", "json-server", "offset", "cursor")},
    "mixpanel-export": "mixpanel",
    "posthog-events": "posthog",
}
EXPORTS = (
    "mixpanel",
    "amplitude",
    "mixpanel-export",
)  # styles whose API answers the whole window in one export
BASIC_AUTH = ("mixpanel", "amplitude")  # styles whose API takes a user and a secret
MIXPANEL_AUTH = ("mixpanel-export",)  # a service account with project_id, or the project's secret alone
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


def _amplitude_time(ms: int) -> str:
    """Amplitude's instants: UTC, no offset, microseconds (``2024-05-01 10:00:00.123000``)."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def amplitude_session(session: Any) -> Any:
    """Amplitude's ``session_id``: the session's start in epoch ms, a number; -1 for an event outside one."""
    if session is None:
        return -1
    if isinstance(session, str) and session[:1] == "s" and session[1:].isdigit():
        return SESSION_EPOCH_MS + int(session[1:])
    if (
        isinstance(session, str) and session.isdigit()
    ):  # the demo's whole-number sessions: numbers on the wire
        return int(session)
    return session


def amplitude(item: Any) -> Any:
    """Amplitude's export: ``user_id``, ``event_type``, ``event_time`` (UTC, no offset), ``event_properties``,
    a numeric ``session_id``."""
    if not isinstance(item, dict):
        return item
    names = {"event": "event_type", "timestamp": "event_time", "properties": "event_properties"}
    out = {names.get(k, k): v for k, v in item.items()}
    if "event_time" in out:
        ms = _ms(out["event_time"])
        if ms is not None:
            out["event_time"] = _amplitude_time(ms)
    out["session_id"] = amplitude_session(out.get("session_id"))
    return out


def _digest(item: Any) -> bytes:
    """16 bytes that a served record always gets the same of (its wire-only keys are the same every time)."""
    return hashlib.blake2b(orjson.dumps(item), digest_size=16).digest()


MIXPANEL_WIRE_KEYS = (
    "$insert_id",
    "mp_processing_time_ms",
    "$mp_api_endpoint",
    "$mp_api_timestamp_ms",
    "$distinct_id_before_identity",
)


def mixpanel_export(item: Any) -> Any:
    """Mixpanel's raw export as it arrives: ``mixpanel``'s record, whole-number session ids as numbers, and
    the keys Mixpanel adds to every event at ingestion (``MIXPANEL_WIRE_KEYS``; the last only on events
    identified after an anonymous start) inside ``properties``. Documented in Mixpanel's export methods
    and default properties pages."""
    out = mixpanel(item)
    props = out.get("properties") if isinstance(out, dict) else None
    if not isinstance(props, dict):
        return out
    d = _digest(item)
    if isinstance(props.get("$session_id"), str) and props["$session_id"].isdigit():
        props["$session_id"] = int(props["$session_id"])
    t = props.get("time")
    sent_ms = round(t * 1000) if type(t) in (int, float) else 1_700_000_000_000
    received = sent_ms + int.from_bytes(d[:2], "big") * 10  # up to 11 minutes after the event
    wire: dict[str, Any] = {
        "$insert_id": str(uuid.UUID(bytes=d)),
        "$mp_api_endpoint": "api.mixpanel.com",
        "$mp_api_timestamp_ms": received,
        "mp_processing_time_ms": received + d[2],
    }
    if d[3] < 32 and "distinct_id" in props:  # one in eight: identified after an anonymous start
        wire["$distinct_id_before_identity"] = f"$device:{d[4:10].hex()}"
    out["properties"] = {**props, **wire}
    return out


POSTHOG_WIRE_KEYS = ("$session_id", "$lib", "$lib_version", "$insert_id")


def posthog_events(item: Any) -> Any:
    """PostHog's events listing as it answers: ``id`` (the event's uuid), ``distinct_id``, ``event``, ``timestamp``
    (ISO with an offset), ``properties`` holding ``$session_id`` and the SDK's ``$lib``, ``$lib_version`` and
    ``$insert_id``, and ``elements``/``elements_chain``; there is no top-level session id."""
    if not isinstance(item, dict):
        return item
    d = _digest(item)
    out: dict[str, Any] = {"id": str(uuid.UUID(bytes=d))}
    for k, v in item.items():
        if k == "user_id":
            out["distinct_id"] = v
        elif k == "timestamp":
            ms = _ms(v)
            out[k] = v if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat()
        elif k not in ("session_id", "properties"):
            out[k] = v
    props = _as_object(item.get("properties"))
    if props is None:  # properties PostHog could not have sent: kept as they are
        out["properties"] = item["properties"]
    else:
        sdk = {"$lib": "web", "$lib_version": "1.180.0", "$insert_id": d[8:].hex()}
        session = item.get("session_id")
        out["properties"] = {**props, **sdk, **({"$session_id": session} if session is not None else {})}
    out["elements"] = []
    out["elements_chain"] = ""
    return out


# the demo's Amplitude uploads an event 30 s after it happened, except that the events of the last 20
# minutes of a day whose hash is even come from clients that upload after midnight (23:40 -> 00:00,
# 23:59:59 -> 00:05): the upload time grows with the event's time, so a later copy of an event is still
# uploaded after it (the last copy wins)
UPLOAD_LAG_MS = 30_000
LATE_BAND_MS = 23 * 3_600_000 + 40 * 60_000
DAY_MS = 86_400_000
MAX_UPLOAD_LAG_MS = DAY_MS - LATE_BAND_MS
SESSION_EPOCH_MS = 1_700_000_000_000


def _event_hash(g: Generated) -> int:
    t = g.truth
    key = f"{t.user_id}|{t.timestamp_ms}|{t.event_type}" if t else f"{g.sort_ms}|{g.ordinal}"
    return zlib.crc32(key.encode())


def upload_ms(g: Generated) -> int:
    """When the demo's Amplitude received ``g`` (its ``server_upload_time``), in epoch ms."""
    in_day = g.sort_ms % DAY_MS
    if in_day >= LATE_BAND_MS and _event_hash(g) % 2 == 0:
        return g.sort_ms - in_day + DAY_MS + (in_day - LATE_BAND_MS) // 4
    return g.sort_ms + UPLOAD_LAG_MS


def amplitude_record(g: Generated) -> bytes:
    """``g`` as Amplitude's export sends it: the mapped fields, and the keys Amplitude adds to every event
    (``$insert_id``, ``uuid``, ``amplitude_id``, ``device_id``, ``event_id``, the server's and the
    client's times, ``user_properties``, ``groups``)."""
    item = orjson.loads(g.body)
    out = amplitude(item)
    if not isinstance(out, dict):
        return g.body
    h = _event_hash(g)
    up = upload_ms(g)
    user = item.get("user_id")
    event_ms = g.truth.timestamp_ms if g.truth else g.sort_ms
    wire = {
        "$insert_id": str(uuid.UUID(int=(h << 64) | g.sort_ms)),
        "uuid": str(uuid.UUID(int=(g.sort_ms << 32) | g.ordinal)),
        "amplitude_id": 100_000_000 + h % 1_000_000,
        # an anonymous user's record in the demo's dirty share has no device either: it stays a dead letter
        "device_id": None if user is None else f"device-{h % 100_000:05d}",
        "event_id": g.ordinal,
        "client_event_time": _amplitude_time(event_ms),
        "client_upload_time": _amplitude_time(up - 1_000),
        "server_received_time": _amplitude_time(up),
        "server_upload_time": _amplitude_time(up),
        "user_properties": {},
        "groups": {},
    }
    return orjson.dumps({**out, **wire})


def amplitude_truth(t: Truth) -> tuple[dict, str | None]:
    """What the Amplitude preset stores for ``t``: its properties, its numeric session id as text."""
    return t.properties, str(amplitude_session(t.session_id))


# what a preset stores of an event's truth where its API changes a value on the wire (default: as is)
STORED: dict[str, Callable[[Truth], tuple[dict, str | None]]] = {"amplitude": amplitude_truth}


def render_event(style: str, g: Generated) -> bytes:
    """One served event as ``style`` sends it (what a dead letter keeps)."""
    return amplitude_record(g) if style == "amplitude" else render(style, g.body)


def amplitude_export(events: Iterable[Generated]) -> bytes:
    """Amplitude's export of ``events``: one gzipped JSON Lines file per hour of *upload* time."""
    by_hour: dict[int, list[tuple[int, bytes]]] = {}
    for g in events:
        up = upload_ms(g)
        by_hour.setdefault(up // 3_600_000, []).append((up, amplitude_record(g)))
    hours = [
        (datetime.fromtimestamp(h * 3600, tz=timezone.utc), [b for _, b in sorted(lines, key=lambda x: x[0])])
        for h, lines in sorted(by_hour.items())
    ]
    return amplitude_zip(hours)


RENDER: dict[str, Callable[[Any], Any]] = {
    "contract": lambda x: x,
    "posthog": posthog,
    "mixpanel": mixpanel,
    "amplitude": amplitude,
    "json-server": lambda x: x,
    "offset": lambda x: x,
    "cursor": lambda x: x,
    "mixpanel-export": mixpanel_export,
    "posthog-events": posthog_events,
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
