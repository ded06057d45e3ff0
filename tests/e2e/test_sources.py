"""Every preset in params/sources/, as shipped, against the demo API serving its wire format (only
API_BASE_URL and the credentials' variables set), into PostgreSQL and SQLite: the exact table, the exact
dead letters (as the API sent them), the counts, no secret in any file. And Mixpanel's two auth styles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from eventpipe.demo import styles
from eventpipe.demo.data import DemoConfig, Truth
from eventpipe.demo.faults import FaultPlan
from eventpipe.demo.server import DEMO_PROJECT_ID, DEMO_USER
from eventpipe.settings import iso
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
    "mixpanel-export": {
        "MIXPANEL_USER": DEMO_USER,
        "MIXPANEL_SECRET": API_KEY,
        "MIXPANEL_PROJECT_ID": DEMO_PROJECT_ID,
    },
    "posthog-events": {"POSTHOG_API_KEY": API_KEY},
}
# every style a preset reads as shipped (the demo's first PostHog style predates the preset's endpoint)
AS_SHIPPED = tuple(s for s in styles.STYLES if s != "posthog")
FAST_RETRY = ["-p", "api.backoff_initial_s=0.05", "-p", "api.backoff_max_s=0.2", "-p", "api.per_page=50"]
# the presets that fix their page size in source.params (api.per_page fills only page_number and offset)
SMALL_PAGES = {
    "posthog": ("-p", "source.params={limit: 50}"),
    "json-server": ("-p", "source.params={_page: 1, _limit: 50}"),
    "cursor": ("-p", "source.params={limit: 50}"),
    "posthog-events": ("-p", "source.params={limit: 50}"),
}


@pytest.fixture
def start(clock: Clock) -> datetime:
    return clock.now.replace(minute=0) - 8 * HOUR


@pytest.fixture(params=AS_SHIPPED)
def styled(request: pytest.FixtureRequest, start: datetime) -> Iterator[tuple[str, Api]]:
    # no events from the top of this hour on: an export of today answers the same at the run and at the check
    config = DemoConfig(start=start, events_per_hour=80, dirty_share=0.05, end=start + 8 * HOUR)
    a = start_api(config, style=request.param)
    # an event at the window's first instant, with a numeric session id: an API whose start is exclusive
    # (PostHog's after) must be asked a moment earlier, or it is lost
    at = _window(start)[0]
    edge = {
        "user_id": "edge",
        "event": "click",
        "timestamp": iso(at),
        "properties": {"k": 1},
        "session_id": "900",
    }
    a.data.append(edge, at, Truth("edge", int(at.timestamp() * 1000), "click", {"k": 1}, "900"))
    yield request.param, a
    a.server.stop()


def test_each_preset_loads_exactly_its_styles_events(styled, start, tmp_path, database_url, monkeypatch):
    style, api = styled
    project = _project(style, api, tmp_path, database_url, monkeypatch)
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
    """Not aligned to days, so the date- and hour-granular exports answer more than the window; ending
    early enough that Amplitude's uploads up to its end plus the horizon (1h) are settled (3h) by now."""
    return start + HOUR, start + 4 * HOUR


def _args(style: str, since: datetime, until: datetime) -> list[str]:
    preset = str(ROOT / "params" / "sources" / f"{styles.PRESETS[style]}.yaml")
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
    # (amplitude is asked for the uploads up to until plus its horizon, 1h)
    days = (since.replace(hour=0), (until - HOUR).replace(hour=0) + 24 * HOUR)
    asked = days if style in ("mixpanel", "mixpanel-export") else (since, until)
    served = (
        api.data.uploaded(since, until + HOUR, styles.upload_ms, styles.MAX_UPLOAD_LAG_MS)
        if style == "amplitude"
        else api.data.events(*asked)
    )
    dirty = {
        styles.render_event(style, g).decode()
        for g in served
        if g.truth is None
        and (
            since <= _at(g.sort_ms) < until
            or g.dirty_kind.startswith("timestamp_")
            or g.dirty_kind == "not_an_object"
            # Mixpanel nests the time in properties: a record whose properties are not an object has none
            or (style in ("mixpanel", "mixpanel-export") and g.dirty_kind.startswith("properties_"))
        )
    }
    assert dirty and {r[0] for r in query(url, "SELECT raw FROM dead_letter")} == dirty

    run = runs(url)[-1]
    outside = query(url, "SELECT outside_window FROM pipeline_runs")[0][0]
    assert run["extracted"] == run["transformed"] + run["rejected_transform"] + run["duplicates"] + outside
    if style in ("mixpanel", "mixpanel-export", "amplitude"):
        # the export answered whole days (uploads past until); the filter kept [since, until)
        assert outside > 0
    metrics = json.loads((project.reports / run["run_id"] / "metrics.json").read_text())
    assert metrics["counts"]["outside_window"] == outside

    for path in [*project.reports.rglob("*"), *project.runs.rglob("*")]:
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes(), path
    return metrics


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


# -- Mixpanel's two auth styles, from the same preset file ----------------------------------------------

PROJECT_SECRET = "mp-project-secret-5d1c8e"


@pytest.fixture
def mixpanel(start: datetime) -> Iterator[Api]:
    config = DemoConfig(start=start, events_per_hour=40, dirty_share=0.05, end=start + 8 * HOUR)
    a = start_api(config, style="mixpanel-export")
    a.server.project_secret = PROJECT_SECRET
    yield a
    a.server.stop()


def _mixpanel_project(mixpanel: Api, tmp_path, database_url: str, monkeypatch, **env: str) -> Project:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("API_BASE_URL", mixpanel.url)
    for name in ("API_KEY", "MIXPANEL_USER", "MIXPANEL_SECRET", "MIXPANEL_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Project(tmp_path, database_url)


def test_mixpanel_with_the_project_secret_as_the_user_loads_exactly(
    mixpanel, start, tmp_path, database_url, monkeypatch
):
    """The deprecated style: the project's secret as the user name, an empty password, no project_id."""
    project = _mixpanel_project(mixpanel, tmp_path, database_url, monkeypatch, MIXPANEL_USER=PROJECT_SECRET)
    since, until = _window(start)
    assert project.cli("backfill", *_args("mixpanel-export", since, until)) == 0
    assert table_rows(database_url) == expected_table(mixpanel, since, until)
    assert all("project_id" not in r.path for r in mixpanel.server.request_log)
    for path in [*project.reports.rglob("*"), *project.runs.rglob("*")]:
        assert not path.is_file() or PROJECT_SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    "env, status, said",
    [
        (  # a wrong service-account secret
            {
                "MIXPANEL_USER": DEMO_USER,
                "MIXPANEL_SECRET": "sk-wrong-secret-99",
                "MIXPANEL_PROJECT_ID": "12345",
            },
            401,
            "check the MIXPANEL_USER and MIXPANEL_SECRET environment variables",
        ),
        (  # the project secret sent as a service account's password
            {"MIXPANEL_USER": DEMO_USER, "MIXPANEL_SECRET": PROJECT_SECRET, "MIXPANEL_PROJECT_ID": "12345"},
            401,
            "check the MIXPANEL_USER and MIXPANEL_SECRET environment variables",
        ),
        (  # a service account that names no project
            {"MIXPANEL_USER": DEMO_USER, "MIXPANEL_SECRET": API_KEY},
            400,
            "project_id is required when authenticating with a service account",
        ),
    ],
    ids=["wrong secret", "secret as password", "no project id"],
)
def test_mixpanel_refuses_wrong_credentials_at_once_with_the_reason(
    mixpanel, start, tmp_path, pg_fresh_url, monkeypatch, capsys, env, status, said
):
    project = _mixpanel_project(mixpanel, tmp_path, pg_fresh_url, monkeypatch, **env)
    since, until = _window(start)
    assert project.cli("backfill", *_args("mixpanel-export", since, until)) == 1
    assert [r.status for r in mixpanel.server.request_log] == [status]  # refused, never retried
    error = runs(pg_fresh_url)[-1]["error"]
    assert f"HTTP {status}" in error and said in error
    assert table_rows(pg_fresh_url) == {}
    shown = capsys.readouterr().err + error
    assert all(secret not in shown for secret in ("sk-wrong-secret-99", PROJECT_SECRET, API_KEY))
