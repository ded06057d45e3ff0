"""How a window ``[since, until)`` is sent: parameter names, instant format, inclusive end, slices.

An API whose bounds are coarser than the window (a date, an hour, an inclusive end) answers a bit more
than was asked; ``filter_field`` then names the field the transform filters back to ``[since, until)``
(counted as ``outside_window``). ``step`` slices one window into several requests, at multiples of the
step since the epoch, so consecutive slices never ask for the same granule twice.

``clock`` says which time the API selects by. ``event`` (the default): the window is on event time.
``arrival``: the API selects by when an event reached it (Amplitude's ``server_upload_time``), so an event
may come back after its window was read. A run then asks for arrivals, not events:

* incremental and full runs read ``[since, until)`` of *arrival* time and keep every event it returns,
  whatever its event time (the watermark is an arrival time; upserts make a second sight harmless);
* a run over a given window of *event* time (a backfill partition, an Airflow interval, a notebook by
  hand) asks for arrivals ``[since, until + horizon)`` and keeps the events whose event time lies in
  ``[since, until)``; what it returns beyond that is counted ``outside_window`` (a neighbouring
  partition keeps it).

``arrival_field`` names the record's arrival time, where the API sends one: the lateness figures
(``core.lateness``) read it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import SettingsError
from ..settings import format_duration, iso, parse_duration

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

FORMATS: dict[str, tuple[Callable[[datetime], Any], timedelta]] = {
    # name: (how an instant is written, the finest step it can say)
    "iso_z": (iso, timedelta(microseconds=1)),
    "iso_ms": (
        lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z",
        timedelta(milliseconds=1),
    ),
    "iso_offset": (lambda t: t.astimezone(timezone.utc).isoformat(), timedelta(microseconds=1)),
    "epoch_s": (lambda t: int((t - EPOCH).total_seconds()), timedelta(seconds=1)),
    "epoch_ms": (lambda t: (t - EPOCH) // timedelta(milliseconds=1), timedelta(milliseconds=1)),
    "date": (lambda t: t.strftime("%Y-%m-%d"), timedelta(days=1)),
    "hour": (lambda t: t.strftime("%Y%m%dT%H"), timedelta(hours=1)),
}
_KEYS = (
    "since_param",
    "until_param",
    "format",
    "start",
    "end",
    "granularity",
    "step",
    "filter_field",
    "clock",
    "horizon",
    "arrival_field",
)
CLOCKS = ("event", "arrival")
DEFAULT_HORIZON = timedelta(hours=1)
# runs whose window is the watermark's: on the arrival clock they read arrivals and keep them all
ARRIVAL_WINDOW_KINDS = ("incremental", "full")


def _horizon(spec: Mapping[str, Any], clock: str) -> timedelta:
    if "horizon" not in spec or spec["horizon"] in (None, ""):
        return DEFAULT_HORIZON if clock == "arrival" else timedelta(0)
    if clock != "arrival":
        raise SettingsError(
            "source.window.horizon applies to clock: arrival only (an event-time API re-reads late events "
            "with window.overlap)"
        )
    try:
        horizon = parse_duration(spec["horizon"])
    except ValueError as e:
        raise SettingsError(f"source.window.horizon: {e}") from None
    if horizon < timedelta(0):
        raise SettingsError(
            "source.window.horizon must not be negative: how long after an event it may arrive"
        )
    return horizon


def _floor(t: datetime, g: timedelta) -> datetime:
    return EPOCH + ((t - EPOCH) // g) * g


def _ceil(t: datetime, g: timedelta) -> datetime:
    f = _floor(t, g)
    return f if f == t else f + g


@dataclass(frozen=True)
class WindowSpec:
    since_param: str = "since"
    until_param: str = "until"
    format: str = "iso_z"
    inclusive_end: bool = False
    exclusive_start: bool = (
        False  # the API keeps what is after its start (PostHog's after): one granule earlier
    )
    granularity: timedelta = timedelta(microseconds=1)
    step: timedelta | None = None
    filter_field: str = ""
    clock: str = "event"
    horizon: timedelta = timedelta(0)
    arrival_field: str = ""

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> WindowSpec:
        unknown = sorted(set(spec) - set(_KEYS))
        if unknown:
            raise SettingsError(f"source.window: unknown key {unknown[0]!r}: use {', '.join(_KEYS)}")
        fmt = str(spec.get("format", "iso_z"))
        if fmt not in FORMATS:
            raise SettingsError(f"source.window.format {fmt!r} is unknown: use one of {', '.join(FORMATS)}")
        end = str(spec.get("end", "exclusive"))
        if end not in ("exclusive", "inclusive"):
            raise SettingsError(f"source.window.end {end!r}: use exclusive or inclusive")
        start = str(spec.get("start", "inclusive"))
        if start not in ("exclusive", "inclusive"):
            raise SettingsError(f"source.window.start {start!r}: use inclusive or exclusive")
        try:
            gran = parse_duration(spec["granularity"]) if spec.get("granularity") else FORMATS[fmt][1]
            step = parse_duration(spec["step"]) if spec.get("step") else None
        except ValueError as e:
            raise SettingsError(f"source.window: {e}") from None
        if gran < FORMATS[fmt][1] or gran <= timedelta(0):
            raise SettingsError(f"source.window.granularity is finer than format {fmt} can say")
        if step is not None and (step <= timedelta(0) or step % gran):
            raise SettingsError("source.window.step must be a positive multiple of the granularity")
        ff = str(spec.get("filter_field") or "")
        if ff not in ("", "timestamp"):
            raise SettingsError(f"source.window.filter_field {ff!r}: only the mapped timestamp can filter")
        clock = str(spec.get("clock") or "event")
        if clock not in CLOCKS:
            raise SettingsError(
                f"source.window.clock {clock!r}: use event (the API selects by event time) or arrival "
                "(by upload or ingestion time)"
            )
        horizon = _horizon(spec, clock)
        arrival_field = spec.get("arrival_field") or ""
        if not isinstance(arrival_field, str) or (arrival_field and not all(arrival_field.split("."))):
            raise SettingsError(
                f"source.window.arrival_field {arrival_field!r}: expected a dotted path, e.g. server_upload_time"
            )
        return cls(
            str(spec.get("since_param", "since")),
            str(spec.get("until_param", "until")),
            fmt,
            end == "inclusive",
            start == "exclusive",
            gran,
            step,
            ff,
            clock,
            horizon,
            arrival_field.strip(),
        )

    @property
    def arrival(self) -> bool:
        return self.clock == "arrival"

    def reads_arrivals_only(self, kind: str) -> bool:
        """The run reads a window of arrival time and keeps all it returns (an incremental or full run on
        the arrival clock); else its window is of event time."""
        return self.arrival and kind in ARRIVAL_WINDOW_KINDS

    def request_window(self, kind: str, since: datetime, until: datetime) -> tuple[datetime, datetime]:
        """What a run of ``kind`` over ``[since, until)`` asks the API for: the window itself, or, for a window
        of event time on the arrival clock, its arrivals up to ``until + horizon``."""
        if not self.arrival or self.reads_arrivals_only(kind):
            return since, until
        return since, until + self.horizon

    def kept_window(self, kind: str, since: datetime, until: datetime) -> tuple[datetime, datetime] | None:
        """The event-time window a client-side filter keeps (the rest counted ``outside_window``); None when
        everything the API returns is kept."""
        if self.arrival:
            return None if self.reads_arrivals_only(kind) else (since, until)
        return (since, until) if self.filter_field else None

    def check_complete(self, kind: str, since: datetime, until: datetime, available: datetime) -> None:
        """Refuse a window of event time whose arrivals up to ``until + horizon`` reach past ``available``
        (now minus ``window.settle``): the API may not have them all yet, and the events still to come
        would be missing with nothing to say so."""
        if self.reads_arrivals_only(kind):
            return
        _, end = self.request_window(kind, since, until)
        if self.arrival and end > available:
            raise SettingsError(
                f"window [{iso(since)}, {iso(until)}) needs the arrivals up to {iso(end)} (its end plus "
                f"source.window.horizon {format_duration(self.horizon)}), but the API has them only up to now "
                f"minus window.settle ({iso(available)}): end it by {iso(available - self.horizon)}, or run it "
                "later"
            )

    def slices(self, since: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
        """The window cut at multiples of ``step`` (one slice without a step)."""
        if self.step is None:
            return [(since, until)]
        out, a = [], since
        while a < until:
            b = min(until, _floor(a, self.step) + self.step)
            out.append((a, b))
            a = b
        return out

    def params(self, since: datetime, until: datetime) -> dict[str, Any]:
        """The query parameters asking for ``[since, until)`` as closely as the API can be asked."""
        write, g = FORMATS[self.format][0], self.granularity
        last = _floor(until - timedelta(microseconds=1), g) if self.inclusive_end else _ceil(until, g)
        first = _floor(since, g) - g if self.exclusive_start else _floor(since, g)
        return {self.since_param: write(first), self.until_param: write(last)}
