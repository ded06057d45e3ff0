"""The demo API's data: deterministic synthetic events and the oracle of what a correct pipeline stores.

Events are generated per hour of event time from ``(seed, hour)``, so any window is reproducible and
``expected_rows`` says exactly what a correct pipeline must store. A configurable share of records is
dirty (every kind the record rules reject), event names and timestamp forms are messy, and some events
are sent twice (the later copy wins). The served stream ends at the data's "now" (``DemoConfig.now``,
else ``clock.now()``), so a pinned instant pins the stream too.
"""

from __future__ import annotations

import bisect
import json
import random
import threading
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import orjson

from .. import clock
from ..settings import DemoSettings

_DEFAULTS = DemoSettings()

HOUR_MS = 3_600_000
EVENTS = ("page_view", "click", "sign_up", "purchase", "logout")
EVENT_WEIGHTS = (50, 30, 5, 5, 10)
TIME_FORMS = ("iso_z", "iso_offset", "iso_naive", "iso_space", "epoch_s", "epoch_s_float", "epoch_ms")
DIRTY_KINDS = (
    "user_id_missing",
    "user_id_null",
    "user_id_empty",
    "user_id_list",
    "event_not_allowed",
    "event_missing",
    "timestamp_unparseable",
    "timestamp_text_garbage",
    "timestamp_missing",
    "timestamp_before_min",
    "timestamp_future",
    "properties_list",
    "properties_number",
    "properties_bad_text",
    "not_an_object",
)


@dataclass(frozen=True)
class Truth:
    """What a correct pipeline stores for one clean event."""

    user_id: str
    timestamp_ms: int
    event_type: str
    properties: dict
    session_id: str | None


@dataclass(frozen=True)
class Generated:
    sort_ms: int  # position in API order (and the instant used for since/until)
    ordinal: int  # tie-breaker inside an hour
    body: bytes  # the item exactly as served
    truth: Truth | None  # None: dirty, must be rejected
    dirty_kind: str | None


@dataclass(frozen=True)
class DemoConfig:
    """Which stream: its seed and shares, and the span of event time it serves."""

    seed: int = _DEFAULTS.seed
    events_per_hour: int = _DEFAULTS.events_per_hour
    dirty_share: float = _DEFAULTS.dirty_share
    duplicate_share: float = _DEFAULTS.duplicate_share
    start: datetime = datetime(2024, 1, 1, tzinfo=timezone.utc)
    live: bool = True  # never serve events later than the server's clock
    end: datetime | None = None  # no events from here on (a source that stopped changing)
    # the server's clock: an instant pins it (``demo-api --now``); None follows ``clock.now()``
    now: datetime | None = None


def _iso_ms(ms: int, offset_min: int = 0, z: bool = True, sep: str = "T", naive: bool = False) -> str:
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc).astimezone(
        timezone(timedelta(minutes=offset_min))
    )
    text = dt.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + f".{ms % 1000:03d}"
    if naive:
        return text
    if z and offset_min == 0:
        return text + "Z"
    sign = "+" if offset_min >= 0 else "-"
    return text + f"{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"


def _render_time(rng: random.Random, ms: int) -> tuple[Any, int]:
    """A timestamp in one of the accepted forms; returns (value, the instant it denotes in ms)."""
    form = rng.choice(TIME_FORMS)
    if form == "iso_z":
        return _iso_ms(ms), ms
    if form == "iso_offset":
        return _iso_ms(ms, offset_min=rng.choice((120, -300, 330, 60))), ms
    if form == "iso_naive":
        return _iso_ms(ms, naive=True), ms
    if form == "iso_space":
        return _iso_ms(ms, z=False, sep=" "), ms
    if form == "epoch_s":
        return ms // 1000, (ms // 1000) * 1000
    if form == "epoch_s_float":
        return round(ms / 1000, 3), ms
    return ms, ms


def _render_event(rng: random.Random, name: str) -> str:
    words = name.split("_")
    return rng.choice(
        (
            name,
            " ".join(w.title() for w in words),
            "-".join(w.upper() for w in words),
            f"  {name.replace('_', ' ')} ",
            "_".join(w.title() for w in words),
        )
    )


def _properties(rng: random.Random, k: int) -> dict:
    props: dict[str, Any] = {"path": f"/p/{rng.randrange(50)}", "k": k}
    if rng.random() < 0.3:
        props["ref"] = {
            "source": rng.choice(("ads", "mail", "direct")),
            "tags": ["a", "b"][: rng.randrange(3)],
        }
    if rng.random() < 0.1:
        props["note"] = rng.choice(("café ☕", 'he said "hi"', "x'); DROP TABLE analytics;--", "emoji 🎉"))
    return props


def _render_exact(rng: random.Random, ms: int) -> Any:
    """A timestamp form that denotes exactly ``ms`` (epoch seconds only for whole seconds)."""
    value, denoted = _render_time(rng, ms)
    return value if denoted == ms else _iso_ms(ms)


def _session(n: int) -> str:
    """A session id: a quarter are whole numbers (as Amplitude's and Mixpanel's are), kept as their text."""
    return str(n) if n % 4 == 0 else f"s{n}"


def _make_item(rng: random.Random, truth: Truth) -> dict:
    """Render a clean event in one of its many accepted shapes."""
    user: Any = int(truth.user_id) if truth.user_id.isdigit() else truth.user_id
    if isinstance(user, str) and rng.random() < 0.1:
        user = f" {user}  "
    item: dict[str, Any] = {
        "user_id": user,
        "event": _render_event(rng, truth.event_type),
        "timestamp": _render_exact(rng, truth.timestamp_ms),
    }
    form = rng.random()
    if truth.properties == {}:
        if form < 0.5:
            item["properties"] = None
    elif form < 0.2:
        item["properties"] = json.dumps(truth.properties, ensure_ascii=False)
    else:
        item["properties"] = truth.properties
    if truth.session_id is not None or rng.random() < 0.5:
        item["session_id"] = truth.session_id
    return item


def _dirty_item(rng: random.Random, kind: str, ms: int) -> Any:
    item: dict[str, Any] = {
        "user_id": f"u{rng.randrange(1000)}",
        "event": _render_event(rng, rng.choice(EVENTS)),
        "timestamp": _iso_ms(ms),
        "properties": {"path": "/dirty"},
        "session_id": None,
    }
    if kind == "user_id_missing":
        del item["user_id"]
    elif kind == "user_id_null":
        item["user_id"] = None
    elif kind == "user_id_empty":
        item["user_id"] = "   "
    elif kind == "user_id_list":
        item["user_id"] = ["u1"]
    elif kind == "event_not_allowed":
        item["event"] = rng.choice(("Bogus Event", "page_vieww", "scroll"))
    elif kind == "event_missing":
        del item["event"]
    elif kind == "timestamp_unparseable":
        dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
        item["timestamp"] = dt.strftime("%m/%d/%Y %H:%M")
    elif kind == "timestamp_text_garbage":
        item["timestamp"] = rng.choice(("yesterday", "", "1714557600"))
    elif kind == "timestamp_missing":
        del item["timestamp"]
    elif kind == "timestamp_before_min":
        item["timestamp"] = "2019-06-01T00:00:00Z"
    elif kind == "timestamp_future":
        item["timestamp"] = "2099-01-01T00:00:00Z"
    elif kind == "properties_list":
        item["properties"] = [1, 2, 3]
    elif kind == "properties_number":
        item["properties"] = 42
    elif kind == "properties_bad_text":
        item["properties"] = "{not json"
    elif kind == "not_an_object":
        return ["not", "an", "object"]
    return item


def _generate_hour(seed: int, eph: int, dirty: float, dup: float, hour: int) -> list[Generated]:
    """Every event of one hour of event time, in API order, with what a correct pipeline stores."""
    rng = random.Random(f"{seed}:{eph}:{dirty}:{dup}:{hour}")
    out: list[Generated] = []
    base = hour * HOUR_MS
    for i in range(eph):
        ms = base + rng.randrange(HOUR_MS)
        if rng.random() < dirty:
            kind = DIRTY_KINDS[rng.randrange(len(DIRTY_KINDS))]
            out.append(Generated(ms, i, orjson.dumps(_dirty_item(rng, kind, ms)), None, kind))
            continue
        form = rng.random()
        user = str(rng.randrange(1000)) if form < 0.15 else f"u{rng.randrange(1000)}"
        event = rng.choices(EVENTS, EVENT_WEIGHTS)[0]
        if rng.random() < 0.15:
            ms -= ms % 1000  # whole seconds, so epoch-seconds forms occur too
        props = {} if rng.random() < 0.1 else _properties(rng, i)
        session = None if rng.random() < 0.2 else _session(rng.randrange(5000))
        truth = Truth(user, ms, event, props, session)
        out.append(Generated(ms, i, orjson.dumps(_make_item(rng, truth)), truth, None))
        if rng.random() < dup:
            # the same event sent again later in the same hour, with newer properties: the copy wins
            later = ms + rng.randrange(max(1, base + HOUR_MS - ms))
            copy = Truth(user, ms, event, {**props, "copy": True}, session)
            out.append(Generated(later, eph + i, orjson.dumps(_make_item(rng, copy)), copy, None))
    out.sort(key=lambda g: (g.sort_ms, g.ordinal))
    return out


@dataclass(frozen=True)
class _Block:
    """Served events in API order, packed: ~(body + 9) bytes an event instead of Python objects.

    A million generated events as ``Generated`` objects cost ~4.7 GB; packed, about 0.35 GB, so
    the benchmark's 5M-event windows fit in memory beside the pipeline. The bodies are stored
    comma-separated, so a page's items are one slice of ``blob``.
    """

    keys: array  # sort_ms per event, ascending
    blob: bytes  # the bodies joined by b","
    offsets: array  # body i is blob[offsets[i]:offsets[i + 1] - 1]

    @classmethod
    def pack(cls, events: list[tuple[int, bytes]]) -> _Block:
        offsets = array("q", [0])
        total = 0
        for _, body in events:
            total += len(body) + 1
            offsets.append(total)
        return cls(array("q", (ms for ms, _ in events)), b",".join(body for _, body in events), offsets)

    def __len__(self) -> int:
        return len(self.keys)

    def run(self, a: int, b: int) -> bytes:
        """Items ``a`` to ``b - 1``, comma-separated (as they sit in a JSON array)."""
        return self.blob[self.offsets[a] : self.offsets[b] - 1]

    def bodies(self, a: int, b: int) -> list[bytes]:
        blob, o = self.blob, self.offsets
        return [blob[o[i] : o[i + 1] - 1] for i in range(a, b)]


@lru_cache(maxsize=256)
def _hour(seed: int, eph: int, dirty: float, dup: float, hour: int) -> _Block:
    return _Block.pack([(g.sort_ms, g.body) for g in _generate_hour(seed, eph, dirty, dup, hour)])


class DemoData:
    """The synthetic event stream: the generated events plus any appended by tests."""

    def __init__(self, config: DemoConfig):
        self.config = config
        self._extra: list[Generated] = []
        self._lock = threading.Lock()

    def append(self, item: Any, sort_time: datetime, truth: Truth | None = None) -> None:
        """Add an event (e.g. a late arrival) that is served from now on at ``sort_time``."""
        ms = int(sort_time.timestamp() * 1000)
        with self._lock:
            self._extra.append(Generated(ms, 10**9 + len(self._extra), orjson.dumps(item), truth, None))
            self._extra.sort(key=lambda g: (g.sort_ms, g.ordinal))

    def _bounds(self, since_ms: int, until_ms: int) -> tuple[int, int]:
        start_ms = int(self.config.start.timestamp() * 1000)
        if self.config.live:
            until_ms = min(until_ms, int((self.config.now or clock.now()).timestamp() * 1000))
        if self.config.end is not None:
            until_ms = min(until_ms, int(self.config.end.timestamp() * 1000))
        return max(since_ms, start_ms), until_ms

    def _extra_in(self, lo_ms: int, hi_ms: int) -> list[Generated]:
        with self._lock:
            return [g for g in self._extra if lo_ms <= g.sort_ms < hi_ms]

    def _hours(self, lo_ms: int, hi_ms: int) -> range:
        return range(lo_ms // HOUR_MS, (hi_ms - 1) // HOUR_MS + 1) if hi_ms > lo_ms else range(0)

    def _segments(self, since_ms: int, until_ms: int) -> list[tuple[_Block, int, int]]:
        lo_ms, hi_ms = self._bounds(since_ms, until_ms)
        segs: list[tuple[_Block, int, int]] = []
        c = self.config
        for hour in self._hours(lo_ms, hi_ms):
            block = _hour(c.seed, c.events_per_hour, c.dirty_share, c.duplicate_share, hour)
            a, b = bisect.bisect_left(block.keys, lo_ms), bisect.bisect_left(block.keys, hi_ms)
            if b > a:
                segs.append((block, a, b))
        extra = self._extra_in(lo_ms, hi_ms)
        if extra:  # appended events merge in by time, after generated ones at the same instant
            served = [
                (block.keys[i], 0, i, body)
                for block, a, b in segs
                for i, body in zip(range(a, b), block.bodies(a, b))
            ]
            served += [(g.sort_ms, 1, g.ordinal, g.body) for g in extra]
            served.sort(key=lambda e: e[:3])
            merged = _Block.pack([(ms, body) for ms, _, _, body in served])
            segs = [(merged, 0, len(merged))]
        return segs

    def total(self, since_ms: int, until_ms: int) -> int:
        """How many events ``[since, until)`` holds (an offset API's ``total``)."""
        return sum(b - a for _, a, b in self._segments(since_ms, until_ms))

    def page(self, since_ms: int, until_ms: int, page: int, per_page: int) -> tuple[list[bytes], int, bool]:
        """One page: (runs of comma-separated items, how many items, whether more follow)."""
        offset, need = (page - 1) * per_page, per_page
        runs: list[bytes] = []
        got = total = 0
        segs = self._segments(since_ms, until_ms)
        for block, a, b in segs:
            n = b - a
            if offset >= total + n:
                total += n
                continue
            start = a + max(0, offset - total)
            end = min(b, start + need - got)
            runs.append(block.run(start, end))
            got += end - start
            total += n
            if got >= need:
                break
        remaining = sum(b - a for _, a, b in segs) if got >= need else 0
        return runs, got, remaining > offset + got

    def events(self, since: datetime, until: datetime) -> Iterator[Generated]:
        """The events served for ``[since, until)`` in API order, with their truth (generated afresh)."""
        lo_ms, hi_ms = self._bounds(int(since.timestamp() * 1000), int(until.timestamp() * 1000))
        c = self.config
        events = [
            g
            for hour in self._hours(lo_ms, hi_ms)
            for g in _generate_hour(c.seed, c.events_per_hour, c.dirty_share, c.duplicate_share, hour)
            if lo_ms <= g.sort_ms < hi_ms
        ]
        extra = self._extra_in(lo_ms, hi_ms)
        if extra:
            events = sorted(events + extra, key=lambda g: (g.sort_ms, g.ordinal))
        yield from events

    def uploaded(
        self, since: datetime, until: datetime, upload_ms: Callable[[Generated], int], max_lag_ms: int
    ) -> list[Generated]:
        """The events an API that selects by upload time serves for ``[since, until)`` of upload time (never
        an upload later than the server's clock), in upload order; ``upload_ms`` says when each was
        uploaded, at most ``max_lag_ms`` after its place in the stream."""
        lo_ms, hi_ms = int(since.timestamp() * 1000), int(until.timestamp() * 1000)
        if self.config.live:
            hi_ms = min(hi_ms, int((self.config.now or clock.now()).timestamp() * 1000))
        lo = datetime.fromtimestamp((lo_ms - max_lag_ms) / 1000, tz=timezone.utc)
        hits = [(upload_ms(g), g) for g in self.events(lo, until)]
        return [g for up, g in sorted(hits, key=lambda x: x[0]) if lo_ms <= up < hi_ms]

    def expected_rows(self, since: datetime, until: datetime) -> dict[tuple[str, int, str], Truth]:
        """Key ``(user_id, timestamp_ms, event_type)`` -> the row a correct load stores (last copy wins)."""
        rows: dict[tuple[str, int, str], Truth] = {}
        for g in self.events(since, until):
            if g.truth is not None:
                rows[(g.truth.user_id, g.truth.timestamp_ms, g.truth.event_type)] = g.truth
        return rows


def demo_data(d: DemoSettings) -> DemoData:
    """The demo event stream that the ``demo`` settings section describes."""
    return DemoData(
        DemoConfig(
            seed=d.seed,
            events_per_hour=d.events_per_hour,
            dirty_share=d.dirty_share,
            duplicate_share=d.duplicate_share,
        )
    )
