"""Every preset in params/sources/ against the demo API serving its wire format, into PostgreSQL:
the exact table, the exact dead letters (as the API sent them), the counts, no secret in any file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from eventpipe.demo import styles
from eventpipe.demo.api import DEMO_USER, DemoConfig
from support import API_KEY, ROOT, Api, Project, expected_table, query, runs, start_api, table_rows

SECRET_ENV = {
    "contract": {"API_KEY": API_KEY},
    "posthog": {"POSTHOG_API_KEY": API_KEY},
    "mixpanel": {"MIXPANEL_USER": DEMO_USER, "MIXPANEL_SECRET": API_KEY},
    "amplitude": {"AMPLITUDE_API_KEY": DEMO_USER, "AMPLITUDE_SECRET_KEY": API_KEY},
    "json-server": {},
    "offset": {"EVENTS_API_KEY": API_KEY},
    "cursor": {"EVENTS_TOKEN": API_KEY},
}
HOUR = timedelta(hours=1)


@pytest.fixture
def start() -> datetime:
    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - 8 * HOUR


@pytest.fixture(params=styles.STYLES)
def styled(request: pytest.FixtureRequest, start: datetime) -> Iterator[tuple[str, Api]]:
    a = start_api(DemoConfig(start=start, events_per_hour=80, dirty_share=0.05), style=request.param)
    yield request.param, a
    a.server.stop()


def test_each_preset_loads_exactly_its_styles_events(styled, start, tmp_path, pg_fresh_url, monkeypatch):
    style, api = styled
    monkeypatch.setenv("DATABASE_URL", pg_fresh_url)
    monkeypatch.setenv("API_BASE_URL", api.url)
    monkeypatch.delenv("API_KEY", raising=False)
    for name, value in SECRET_ENV[style].items():
        monkeypatch.setenv(name, value)
    project = Project(tmp_path, pg_fresh_url)
    # not aligned to days, so the date- and hour-granular exports answer more than the window
    since, until = start + 2 * HOUR, start + 5 * HOUR
    preset = str(ROOT / "params" / "sources" / f"{style}.yaml")
    window = ["--start", since.isoformat(), "--end", until.isoformat()]
    code = project.cli("backfill", *window, "--params", preset, "-p", "quality.min_pass_rate=0.8")
    assert code == 0

    assert table_rows(pg_fresh_url) == expected_table(api, since, until)
    # dead letters: the dirty records of the window as the API sent them, and those an export sent from
    # outside it that carry no usable time (the rest of what it sent from outside is counted, not kept)
    asked = (
        (since.replace(hour=0), until.replace(hour=0) + 24 * HOUR) if style == "mixpanel" else (since, until)
    )
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
    assert dirty and {r[0] for r in query(pg_fresh_url, "SELECT raw FROM dead_letter")} == dirty

    run = runs(pg_fresh_url)[-1]
    outside = query(pg_fresh_url, "SELECT outside_window FROM pipeline_runs")[0][0]
    assert run["extracted"] == run["transformed"] + run["rejected_transform"] + run["duplicates"] + outside
    if style == "mixpanel":
        assert outside > 0  # the export answered whole days; the filter kept [since, until)
    metrics = json.loads((project.reports / run["run_id"] / "metrics.json").read_text())
    assert metrics["counts"]["outside_window"] == outside

    for path in [*project.reports.rglob("*"), *project.runs.rglob("*")]:
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes(), path


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
