"""Every preset in params/sources/ against the demo API serving its wire format, into PostgreSQL:
the exact table, the exact dead letters (as the API sent them), the counts, no secret in any file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from eventpipe.demo import styles
from eventpipe.demo.data import DemoConfig
from eventpipe.demo.faults import FaultPlan
from eventpipe.demo.server import DEMO_USER
from support import (
    API_KEY,
    HOUR,
    ROOT,
    Api,
    Clock,
    Project,
    expected_table,
    query,
    runs,
    start_api,
    table_rows,
)

SECRET_ENV = {
    "contract": {"API_KEY": API_KEY},
    "posthog": {"POSTHOG_API_KEY": API_KEY},
    "mixpanel": {"MIXPANEL_USER": DEMO_USER, "MIXPANEL_SECRET": API_KEY},
    "amplitude": {"AMPLITUDE_API_KEY": DEMO_USER, "AMPLITUDE_SECRET_KEY": API_KEY},
    "json-server": {},
    "offset": {"EVENTS_API_KEY": API_KEY},
    "cursor": {"EVENTS_TOKEN": API_KEY},
}
FAST_RETRY = ["-p", "api.backoff_initial_s=0.05", "-p", "api.backoff_max_s=0.2", "-p", "api.per_page=50"]
# the presets that fix their page size in source.params (api.per_page fills only page_number and offset)
SMALL_PAGES = {
    "posthog": ("-p", "source.params={limit: 50}"),
    "json-server": ("-p", "source.params={_page: 1, _limit: 50}"),
    "cursor": ("-p", "source.params={limit: 50}"),
}


@pytest.fixture
def start(clock: Clock) -> datetime:
    return clock.now.replace(minute=0) - 8 * HOUR


@pytest.fixture(params=styles.STYLES)
def styled(request: pytest.FixtureRequest, start: datetime) -> Iterator[tuple[str, Api]]:
    # no events from the top of this hour on: an export of today answers the same at the run and at the check
    config = DemoConfig(start=start, events_per_hour=80, dirty_share=0.05, end=start + 8 * HOUR)
    a = start_api(config, style=request.param)
    yield request.param, a
    a.server.stop()


def test_each_preset_loads_exactly_its_styles_events(styled, start, tmp_path, pg_fresh_url, monkeypatch):
    style, api = styled
    project = _project(style, api, tmp_path, pg_fresh_url, monkeypatch)
    since, until = _window(start)
    assert project.cli("backfill", *_args(style, since, until)) == 0
    _assert_exact(style, api, project, since, until)


def test_each_preset_is_still_exact_under_faults(styled, start, tmp_path, pg_fresh_url, monkeypatch):
    """429, 503, a dropped connection and a body cut short: each noticed and retried, the table exact.

    Every other request fails, so each page of 50 records fails at most once. An export answers the
    whole window in one request, which every other request would never fail: it gets every fault in a row.
    """
    style, api = styled
    project = _project(style, api, tmp_path, pg_fresh_url, monkeypatch)
    since, until = _window(start)
    kinds = ("429", "503", "drop", "truncate")
    every, limit = (1, len(kinds)) if style in styles.EXPORTS else (2, None)
    api.server.faults = FaultPlan(kinds, every=every, retry_after="0", limit=limit)
    args = [*_args(style, since, until), *FAST_RETRY, *SMALL_PAGES.get(style, ())]
    assert project.cli("backfill", *args) == 0

    assert sorted(set(api.server.faults_served)) == sorted(kinds)
    extract = _assert_exact(style, api, project, since, until)["stages"]["extract"]
    assert extract["retries"] == len(api.server.faults_served)  # none was taken for an answer
    assert extract["attempts"] == api.server.requests


def _project(style: str, api: Api, tmp_path, database_url: str, monkeypatch) -> Project:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("API_BASE_URL", api.url)
    monkeypatch.delenv("API_KEY", raising=False)
    for name, value in SECRET_ENV[style].items():
        monkeypatch.setenv(name, value)
    return Project(tmp_path, database_url)


def _window(start: datetime) -> tuple[datetime, datetime]:
    """Not aligned to days, so the date- and hour-granular exports answer more than the window."""
    return start + 2 * HOUR, start + 5 * HOUR


def _args(style: str, since: datetime, until: datetime) -> list[str]:
    preset = str(ROOT / "params" / "sources" / f"{style}.yaml")
    window = ["--start", since.isoformat(), "--end", until.isoformat()]
    return [*window, "--params", preset, "-p", "quality.min_pass_rate=0.8"]


def _assert_exact(style: str, api: Api, project: Project, since: datetime, until: datetime) -> dict:
    """The exact table, the exact dead letters, counts that add up, and no secret in any file; the
    run's metrics."""
    url = project.database_url
    assert table_rows(url) == expected_table(api, since, until)
    # dead letters: the dirty records of the window as the API sent them, and those an export sent from
    # outside it that carry no usable time (the rest of what it sent from outside is counted, not kept)
    # (mixpanel is asked for whole days, the last one inclusive: the day of until's last hour)
    days = (since.replace(hour=0), (until - HOUR).replace(hour=0) + 24 * HOUR)
    asked = days if style == "mixpanel" else (since, until)
    dirty = {
        styles.render(style, g.body).decode()
        for g in api.data.events(*asked)
        if g.truth is None
        and (
            since <= _at(g.sort_ms) < until
            or g.dirty_kind.startswith("timestamp_")
            or g.dirty_kind == "not_an_object"
        )
    }
    assert dirty and {r[0] for r in query(url, "SELECT raw FROM dead_letter")} == dirty

    run = runs(url)[-1]
    outside = query(url, "SELECT outside_window FROM pipeline_runs")[0][0]
    assert run["extracted"] == run["transformed"] + run["rejected_transform"] + run["duplicates"] + outside
    if style == "mixpanel":
        assert outside > 0  # the export answered whole days; the filter kept [since, until)
    metrics = json.loads((project.reports / run["run_id"] / "metrics.json").read_text())
    assert metrics["counts"]["outside_window"] == outside

    for path in [*project.reports.rglob("*"), *project.runs.rglob("*")]:
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes(), path
    return metrics


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
