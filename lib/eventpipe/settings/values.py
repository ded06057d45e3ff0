"""The values settings are made of: durations, instants, ``[since, until)`` windows, and how a value is shown."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# a duration setting beyond a century is a typo, and near timedelta's limits date arithmetic overflows
MAX_DURATION = timedelta(days=36500)
SHOWN_CHARS = 40


def shown(value: Any) -> str:
    """``repr(value)`` cut to a short prefix: an error message never echoes a huge (or expanded) value."""
    text = repr(value) if not isinstance(value, str) else repr(value[: SHOWN_CHARS + 1])
    return text if len(text) <= SHOWN_CHARS + 2 else text[:SHOWN_CHARS] + "…"


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """``"15m"``, ``"1h30m"``, ``"7d"``, ``"0s"`` or a number of seconds -> timedelta."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if not math.isfinite(text) or not 0 <= text <= MAX_DURATION.total_seconds():
            raise ValueError(f"{shown(text)} seconds is out of range (0 to {MAX_DURATION.days}d)")
        return timedelta(seconds=float(text))
    s = str(text).strip().lower()
    pos, total = 0, 0.0
    # each piece is matched where the previous one ended (a search over a long digit run backtracks
    # quadratically); no duration needs more than a few dozen characters
    while pos < len(s) <= 64 and (m := _DURATION_RE.match(s, pos)):
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f"{shown(text)} is not a duration (use e.g. 30s, 15m, 1h, 7d)")
    if total > MAX_DURATION.total_seconds():
        raise ValueError(f"{shown(text)} is out of range (at most {MAX_DURATION.days}d)")
    return timedelta(seconds=total)


def format_duration(td: timedelta) -> str:
    secs = int(td.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs and secs % size == 0:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def parse_instant(text: str | datetime) -> datetime:
    """An ISO 8601 date or date-time -> aware UTC datetime (no offset means UTC)."""
    if isinstance(text, datetime):
        dt = text
    else:
        s = str(text).strip()
        try:
            dt = datetime.fromisoformat(s.replace("z", "Z"))
        except ValueError:
            raise ValueError(
                f"{shown(text)} is not an ISO 8601 date or time (use e.g. 2024-05-01 or 2024-05-01T06:00:00Z)"
            ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        utc = dt.astimezone(timezone.utc)
        utc.timestamp()  # the instant itself must be in range, not only its wall-clock text
    except (OverflowError, ValueError):
        raise ValueError(
            f"{shown(text)} is out of range: use an instant between years 1 and 9999 UTC"
        ) from None
    return utc


def parse_window(
    since: str | datetime, until: str | datetime, names: tuple[str, str] = ("since", "until")
) -> tuple[datetime, datetime]:
    """``[since, until)`` as aware UTC datetimes; ``ValueError`` when either is not ISO 8601 or the window is empty."""
    s, u = parse_instant(since), parse_instant(until)
    if u <= s:
        raise ValueError(f"{names[0]} {iso(s)} must be before {names[1]} {iso(u)}")
    return s, u


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


def _to_plain(value: Any) -> Any:
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, tuple):
        return list(value)
    return value
