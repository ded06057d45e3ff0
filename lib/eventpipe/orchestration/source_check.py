"""``source check``: the first page of the configured source, its records before and after the field map,
and what the record rules make of them. The quickest way to set up a new API."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..core.fields import FieldMap
from ..core.records import parse_items
from ..errors import SettingsError, SourceError
from ..jsonio import dumps
from ..settings import Settings, iso
from ..source.client import SourceClient
from ..source.config import SourceConfig

SHOWN = 5


@dataclass(frozen=True)
class SourceCheck:
    """What the first page showed."""

    url: str
    paginator: str
    format: str
    records_path: str
    window: tuple[str, str]
    sent: dict[str, Any]
    total: int  # records on the first page
    raw: list[str]  # the first records as sent
    mapped: list[str]  # after the field map
    verdicts: list[str]  # "ok" or the reasons the record rules give


def first_page(settings: Settings, since: datetime, until: datetime) -> SourceCheck:
    """Fetch the first page (of the first slice) once, without retries; a config problem is a ``SettingsError``."""
    config = SourceConfig.from_settings(settings, os.environ)
    fields = FieldMap.parse(settings.source.fields)
    api = dataclasses.replace(settings.api, max_retries=0, concurrency=1)  # one request: the first page
    client = SourceClient(settings.api.base_url, config, api)
    a, b = config.window.slices(since, until)[0]
    try:
        page = next(iter(client.pages(a, b, chunk_rows=1000)))
    except SourceError as e:
        raise SettingsError(f"source check: {e}") from None
    records = page.records()
    shown = records[:SHOWN]
    mapped = fields.mapper()(shown)
    if records and fields.first_missing_user_id(records):
        first = records[0]
        keys = ", ".join(list(first)[:12]) if isinstance(first, dict) else type(first).__name__
        raise SettingsError(
            f"source check: source.fields.user_id finds no user id in any of the {len(records)} records of "
            f"the first page (keys of the first record: {keys}); map user_id to the field that holds it"
        )
    df = parse_items(list(range(len(mapped))), mapped)
    verdicts = ["ok" if not r else "; ".join(r) for r in df["reasons"]]
    return SourceCheck(
        client.url,
        config.paginator_type,
        config.format,
        config.records,
        (iso(a), iso(b)),
        config.window.params(a, b),
        len(records),
        [dumps(x) for x in shown],
        [dumps(x) for x in mapped],
        verdicts,
    )
