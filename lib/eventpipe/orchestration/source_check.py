"""``source check``: the first pages of the window the next ``run`` would read, one record before and after
the field map, and what a run would make of every record on them. The quickest way to set up a new API."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError

from .. import clock
from ..core.fields import FieldMap
from ..core.process import Rules, fates
from ..errors import DatabaseUnavailable, SettingsError, SourceError
from ..settings import Settings
from ..source.client import SourceClient
from ..source.config import SourceConfig
from ..storage.store import Store, database_error
from .runner import incremental_window


@dataclass(frozen=True)
class CheckWindow:
    """The window ``source check`` reads, and why it is that one."""

    since: datetime
    until: datetime
    why: str


@dataclass(frozen=True)
class SourceCheck:
    """What the pages read showed."""

    url: str
    paginator: str
    format: str
    records_path: str
    window: CheckWindow
    sent: dict[str, Any]  # the window as the first request sends it
    pages: int  # pages read
    total: int  # records on them
    record: Any  # the first record as sent
    mapped: Any  # the same record after the field map
    fate: str  # what a run makes of it
    would_load: int  # of all the records read
    dead_letters: int
    outside: int  # outside the window (dropped by source.window.filter_field)
    reasons: dict[str, int]  # the dead letters' reasons by name, most frequent first


def next_run_window(settings: Settings, now: datetime | None = None) -> CheckWindow:
    """The window the next incremental ``run`` would read, from the database's watermark (nothing is created:
    a database without the pipeline's tables has no watermark yet)."""
    now = (now or clock.now()).replace(microsecond=0)
    since, until, why = incremental_window(settings.window, _watermark(settings), now)
    return CheckWindow(since, until, f"what the next run reads, {why}")


def _watermark(settings: Settings) -> datetime | None:
    store = Store(settings)
    try:
        if store.is_sqlite and not Path(store.sqlite_path).is_file():
            return None
        if not inspect(store.reader).has_table(store.t.state.name, schema=store.schema or None):
            return None
        return store.watermark()
    except SQLAlchemyError as e:
        raise DatabaseUnavailable(
            f"source check: cannot read the watermark from {store.masked_url} ({database_error(e, settings)}), "
            "so the next run's window is unknown: start the database, or name a window with --since/--until"
        ) from None
    finally:
        store.dispose()


def check_source(settings: Settings, window: CheckWindow, pages: int = 1) -> SourceCheck:
    """Fetch up to ``pages`` pages of ``window`` once, without retries; a config problem (an answer the
    configured paths do not fit, a field map that finds no user id) is a ``SettingsError``."""
    config = SourceConfig.from_settings(settings, os.environ)
    api = dataclasses.replace(settings.api, max_retries=0, concurrency=1)  # each page asked once
    client = SourceClient(settings.api.base_url, config, api)
    a, b = config.window.slices(window.since, window.until)[0]
    records: list[Any] = []
    read = 0
    try:
        for page in client.pages(window.since, window.until, chunk_rows=1000):
            records += page.records()
            read += 1
            if read >= pages:
                break
    except SourceError as e:
        raise SettingsError(f"source check: {e}") from None
    fields = FieldMap.parse(settings.source.fields)
    if records and fields.first_missing_user_id(records):
        first = records[0]
        keys = ", ".join(list(first)[:12]) if isinstance(first, dict) else type(first).__name__
        raise SettingsError(
            f"source check: source.fields.user_id finds no user id in any of the {len(records)} records read "
            f"(keys of the first record: {keys}); map user_id to the field that holds it"
        )
    outcomes = fates(records, Rules.of(settings, clock.now(), (window.since, window.until)))
    reasons = Counter(r.split(":", 1)[0] for fate in outcomes if fate for r in fate)
    return SourceCheck(
        client.url,
        config.paginator_type,
        config.format,
        config.records,
        window,
        config.window.params(a, b),
        read,
        len(records),
        records[0] if records else None,
        fields.mapper()(records[:1])[0] if records else None,
        _verdict(outcomes[0]) if outcomes else "",
        sum(fate == [] for fate in outcomes),
        sum(bool(fate) for fate in outcomes),
        sum(fate is None for fate in outcomes),
        dict(reasons.most_common()),
    )


def _verdict(fate: list[str] | None) -> str:
    if fate is None:
        return "outside the window"
    return "would load" if not fate else "dead letter: " + "; ".join(fate)
