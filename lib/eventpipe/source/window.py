"""How a window ``[since, until)`` is sent: parameter names, instant format, inclusive end, slices.

An API whose bounds are coarser than the window (a date, an hour, an inclusive end) answers a bit more
than was asked; ``filter_field`` then names the field the transform filters back to ``[since, until)``
(counted as ``outside_window``). ``step`` slices one window into several requests, at multiples of the
step since the epoch, so consecutive slices never ask for the same granule twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import SettingsError
from ..settings import iso, parse_duration

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
_KEYS = ("since_param", "until_param", "format", "end", "granularity", "step", "filter_field")


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
    granularity: timedelta = timedelta(microseconds=1)
    step: timedelta | None = None
    filter_field: str = ""

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
        return cls(
            str(spec.get("since_param", "since")),
            str(spec.get("until_param", "until")),
            fmt,
            end == "inclusive",
            gran,
            step,
            ff,
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
        return {self.since_param: write(_floor(since, g)), self.until_param: write(last)}
