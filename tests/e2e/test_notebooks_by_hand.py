"""An analyst's hand run of 01 → 02 → 03 (papermill, a real kernel): it cannot write production by accident.

Each test's project is a temp folder (``EVENTPIPE_HOME``) that holds the real notebooks and params, so
``runs/`` and ``data/eventpipe.sqlite`` are the test's own and the notebooks run with their defaults.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import papermill as pm
import pytest
import scrapbook as sb

from support import ROOT, Api, DemoConfig, expected_table, query, runs, start_api, table_rows

MANUAL_ID = re.compile(r"\d{8}T\d{6}-manual-[0-9a-f]{6}")
UTC = timezone.utc


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder of the test's own, no API and no database configured: what a fresh shell has."""
    folder = tmp_path / "project"
    folder.mkdir()
    for name in ("notebooks", "params"):
        (folder / name).symlink_to(ROOT / name)
    monkeypatch.setenv("EVENTPIPE_HOME", str(folder))
    for name in ("API_BASE_URL", "API_KEY", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return folder


def execute(home: Path, notebook: str, **parameters: Any) -> dict[str, Any]:
    """Execute ``notebook`` with papermill as an analyst would; return its ``metrics`` scrap."""
    out = home / "executed" / f"{notebook}-{len(list(home.glob('executed/*')))}.ipynb"
    out.parent.mkdir(exist_ok=True)
    pm.execute_notebook(
        str(home / "notebooks" / f"{notebook}.ipynb"),
        str(out),
        parameters=parameters,
        cwd=str(home),
        progress_bar=False,
    )
    return sb.read_notebook(str(out)).scraps["metrics"].data


def refused(home: Path, notebook: str, **parameters: Any) -> str:
    """Execute ``notebook``, which must stop with a ``SettingsError``; return its one-line message."""
    with pytest.raises(pm.PapermillExecutionError) as failed:
        execute(home, notebook, **parameters)
    assert failed.value.ename == "SettingsError", failed.value.evalue
    assert "\n" not in failed.value.evalue
    return failed.value.evalue


def manual_runs(home: Path) -> list[Path]:
    return sorted(p.parent for p in (home / "runs").glob("*/settings.json"))


def has_table(database_url: str, name: str) -> bool:
    if database_url.startswith("sqlite"):
        sql = f"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '{name}'"
    else:
        sql = f"SELECT count(*) FROM information_schema.tables WHERE table_name = '{name}'"
    return query(database_url, sql)[0][0] > 0


def test_without_an_api_a_real_database_stops_the_extract_with_one_line(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DATABASE_URL", database_url)  # PostgreSQL, or a SQLite file that is not the demo's
    line = refused(home, "01_extract", scratch=False)
    assert "API_BASE_URL" in line and "scratch = True" in line
    assert database_url.rsplit("/", 1)[1] in line  # the database it would have written
    assert manual_runs(home) == []  # no run was started: nothing for 02 and 03 to pick up
    assert not has_table(database_url, "analytics")


def test_without_an_api_the_default_sqlite_file_still_gets_the_demo(home: Path):
    metrics = execute(home, "01_extract", scratch=False)
    assert metrics["extracted"] > 0
    run = manual_runs(home)[0]
    settings = json.loads((run / "settings.json").read_text())
    assert settings["settings"]["database"] == f"sqlite:///{home / 'data' / 'eventpipe.sqlite'}"
    assert not settings["scratch"]


def test_the_default_flow_loads_into_the_runs_scratch_database_not_database_url(
    home: Path, pg_fresh_url: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DATABASE_URL", pg_fresh_url)  # a real database in the analyst's environment
    for notebook in ("01_extract", "02_transform_quality", "03_load"):
        metrics = execute(home, notebook)
    (run,) = manual_runs(home)
    scratch = f"sqlite:///{run / 'scratch.sqlite'}"
    assert metrics["database"] == scratch and metrics["loaded"] > 0
    (record,) = runs(scratch)
    assert (record["run_id"], record["kind"], record["status"]) == (run.name, "manual", "succeeded")
    assert MANUAL_ID.fullmatch(run.name)
    assert (record["window_since"], record["window_until"]) == (
        datetime(2024, 5, 1, tzinfo=UTC),
        datetime(2024, 5, 2, tzinfo=UTC),
    )
    assert not has_table(pg_fresh_url, "analytics") and not has_table(pg_fresh_url, "pipeline_runs")


@pytest.fixture
def past_api() -> Iterator[Api]:
    """The demo API on loopback with a day of past events, 60 an hour."""
    a = start_api(DemoConfig(start=datetime(2024, 5, 1, tzinfo=UTC), events_per_hour=60))
    yield a
    a.server.stop()


def test_each_hand_run_gets_its_own_manual_record(
    home: Path, database_url: str, past_api: Api, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("API_BASE_URL", past_api.url)
    monkeypatch.setenv("API_KEY", past_api.key)
    since, until = datetime(2024, 5, 1, 2, tzinfo=UTC), datetime(2024, 5, 1, 5, tzinfo=UTC)
    for _ in range(2):
        execute(home, "01_extract", since=since.isoformat(), until=until.isoformat(), scratch=False)
        execute(home, "02_transform_quality")
        execute(home, "03_load")
    records = runs(database_url)
    assert [r["run_id"] for r in records] == [p.name for p in manual_runs(home)]
    assert len({r["run_id"] for r in records}) == 2
    assert all(MANUAL_ID.fullmatch(r["run_id"]) for r in records)
    assert {(r["kind"], r["status"], r["window_since"], r["window_until"]) for r in records} == {
        ("manual", "succeeded", since, until)
    }
    assert table_rows(database_url) == expected_table(past_api, since, until)


def test_02_and_03_take_the_window_from_the_run_01_started(home: Path):
    since, until = datetime(2024, 5, 1, 6, tzinfo=UTC), datetime(2024, 5, 1, 9, tzinfo=UTC)
    extract = execute(home, "01_extract", since=since.isoformat(), until=until.isoformat())
    transform = execute(home, "02_transform_quality")  # the notebook's defaults: no window given
    assert transform["outside_window"] == 0 and transform["extracted"] == extract["extracted"] > 0
    load = execute(home, "03_load", since="2024-05-01T06:00:00Z")  # the run's own start: accepted
    (record,) = runs(load["database"])
    assert (record["window_since"], record["window_until"]) == (since, until)
    assert record["loaded"] == transform["passed"]

    line = refused(home, "02_transform_quality", since="2024-05-01", until="2024-05-02")
    run = manual_runs(home)[0].name
    assert f"run {run} covers [2024-05-01T06:00:00Z, 2024-05-01T09:00:00Z)" in line
    assert "given [2024-05-01T00:00:00Z, 2024-05-02T00:00:00Z)" in line
