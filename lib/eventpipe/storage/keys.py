"""Which natural keys the pipeline's table already holds: what ``core.lateness`` asks before a load."""

from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import select

from ..core.lateness import Key
from .store import Store
from .tables import as_utc

BATCH = 500  # user ids per query (SQLite's default limit on bound parameters is far above)


def _us(ts: datetime) -> int:
    t = as_utc(ts)
    assert t is not None
    delta = t - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def stored_keys(store: Store, keys: list[Key]) -> set[Key]:
    """The subset of ``keys`` (user_id, event time in µs, event_type) present in the store's table.

    Asked by user id and event date (both indexed or in the key), then matched here: a timestamp bound as a
    parameter compares as text on SQLite, where a stored instant may be written with fewer digits."""
    if not keys:
        return set()
    a = store.t.analytics
    wanted = set(keys)
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc).date()
    days = [epoch.toordinal() + k[1] // 86_400_000_000 for k in keys]
    d0, d1 = date.fromordinal(min(days)), date.fromordinal(max(days))
    users = sorted({k[0] for k in keys})
    found: set[Key] = set()
    with store.reader.connect() as conn:
        for i in range(0, len(users), BATCH):
            rows = conn.execute(
                select(a.c.user_id, a.c.timestamp, a.c.event_type).where(
                    a.c.user_id.in_(users[i : i + BATCH]), a.c.event_date.between(d0, d1)
                )
            )
            for user, ts, event in rows:
                key = (user, _us(ts), event)
                if key in wanted:
                    found.add(key)
    return found
