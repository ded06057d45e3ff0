"""Named pipelines in one database: two demo API styles, each pipeline with its own table, watermark,
dead letters and runs; a failing one leaves the other as it was; a database of the release before is
pipeline ``default``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text

from eventpipe.demo.data import DemoConfig
from eventpipe.settings import normalise_database_url, pipelines
from support import HOUR, NOW, ROOT, Api, Project, expected_table, query, runs, start_api, table_rows


@pytest.fixture(autouse=True)
def no_backend_table(database_url: str) -> None:
    """The PostgreSQL database is shared by the session's tests and emptied of the default tables only."""
    engine = create_engine(normalise_database_url(database_url))
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS analytics_backend"))
    engine.dispose()


@pytest.fixture
def backend_api() -> Iterator[Api]:
    """A second source: the demo API in json-server's wire format, with data of its own (another seed)."""
    now = NOW.replace(minute=0)
    config = DemoConfig(start=now - 6 * HOUR, events_per_hour=40, seed=7, dirty_share=0.05, end=now)
    a = start_api(config, style="json-server")
    yield a
    a.server.stop()


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``params/pipelines/`` of the test: empty, and no ``params/default.yaml`` beside it."""
    path = tmp_path / "pipelines"
    path.mkdir()
    monkeypatch.setattr(pipelines, "PIPELINES_DIR", path)
    monkeypatch.setattr(pipelines, "DEFAULT_PARAMS", tmp_path / "no-default.yaml")
    return path


def _define(folder: Path, name: str, sections: dict) -> None:
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(sections))


def _backend(folder: Path, api: Api, since: datetime) -> None:
    """Pipeline ``backend``: the json-server preset, its own API and its own first window."""
    preset = yaml.safe_load((ROOT / "params" / "sources" / "json-server.yaml").read_text())
    preset["api"]["base_url"] = api.url
    preset["window"] = {"initial_since": since.isoformat()}
    preset["quality"] = {"min_pass_rate": 0.8}
    _define(folder, "backend", preset)


def _rows(database_url: str, table: str) -> dict[tuple[str, int, str], tuple[dict, str | None]]:
    """A pipeline's table as ``table_rows`` gives ``analytics``."""
    out = {}
    for user, ts, event, props, session in query(
        database_url, f'SELECT user_id, "timestamp", event_type, properties, session_id FROM {table}'
    ):
        ts = datetime.fromisoformat(ts) if isinstance(ts, str) else ts
        ms = round((ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)).timestamp() * 1000)
        out[(user, ms, event)] = (props if isinstance(props, dict) else json.loads(props), session)
    return out


def _state(database_url: str) -> dict[str, tuple]:
    """Each pipeline's run state: watermark rows, dead letters, runs."""
    return {
        p: (
            query(database_url, f"SELECT * FROM pipeline_state WHERE pipeline = '{p}'"),
            query(database_url, f"SELECT * FROM dead_letter WHERE pipeline = '{p}' ORDER BY id"),
            query(database_url, f"SELECT * FROM pipeline_runs WHERE pipeline = '{p}' ORDER BY run_id"),
        )
        for p in ("default", "backend")
    }


def test_two_pipelines_keep_their_own_tables_watermarks_and_dead_letters(
    project: Project, api: Api, backend_api: Api, folder: Path, capsys: pytest.CaptureFixture[str]
):
    url = project.database_url
    backend_since = backend_api.data.config.start
    _define(folder, "default", {"quality": {"min_pass_rate": 0.8}})
    assert project.cli("run") == 0  # pipeline default, as before pipelines existed
    _backend(folder, backend_api, backend_since)

    assert project.cli("run", "--all") == 0  # default again (its overlap), and backend's first run
    pipeline_of = dict(query(url, "SELECT run_id, pipeline FROM pipeline_runs"))
    all_runs = runs(url)
    default_runs = [r for r in all_runs if pipeline_of[r["run_id"]] == "default"]
    (backend_run,) = [r for r in all_runs if pipeline_of[r["run_id"]] == "backend"]
    assert len(default_runs) == 2 and all(r["status"] == "succeeded" for r in all_runs)

    # a new pipeline in a database that holds another starts from its own window.initial_since
    assert backend_run["window_since"] == backend_since
    assert table_rows(url) == expected_table(
        api, default_runs[0]["window_since"], default_runs[-1]["window_until"]
    )
    assert _rows(url, "analytics_backend") == expected_table(
        backend_api, backend_since, backend_run["window_until"]
    )
    marks = dict(query(url, "SELECT pipeline, run_id FROM pipeline_state WHERE name = 'incremental'"))
    assert marks == {"default": default_runs[-1]["run_id"], "backend": backend_run["run_id"]}
    pending = dict(
        query(url, "SELECT pipeline, count(*) FROM dead_letter WHERE status = 'pending' GROUP BY pipeline")
    )
    new = dict(query(url, "SELECT pipeline, sum(dead_letters_new) FROM pipeline_runs GROUP BY pipeline"))
    assert pending["backend"] > 0 and pending == {p: int(n) for p, n in new.items()}
    metrics = json.loads((project.reports / backend_run["run_id"] / "metrics.json").read_text())
    assert metrics["pipeline"] == "backend"
    # the parameters its notebooks read from the run's settings file name the pipeline
    assert metrics["ledger"]["params"]["pipeline.name"] == "backend"

    capsys.readouterr()
    assert project.cli("status") == 0
    out = capsys.readouterr().out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    lines = {
        line.split()[0]: line for line in out.splitlines() if line.split()[:1] in (["default"], ["backend"])
    }
    assert set(lines) == {"default", "backend"}
    assert lines["backend"].split()[-1] == "ok" and lines["backend"].split()[-2] == str(pending["backend"])


def test_a_failing_pipeline_leaves_the_other_untouched(
    project: Project, api: Api, backend_api: Api, folder: Path
):
    url = project.database_url
    assert project.cli("run", "-p", "quality.min_pass_rate=0.8") == 0
    _backend(folder, backend_api, backend_api.data.config.start)
    default_rows, before = table_rows(url), _state(url)

    assert project.cli("run", "--pipeline", "backend", "-p", "quality.min_pass_rate=1.0") == 1
    after = _state(url)
    assert table_rows(url) == default_rows and after["default"] == before["default"]
    marks, dead, (failed,) = after["backend"]
    assert marks == [] and dead == [] and "failed" in failed
    assert _rows(url, "analytics_backend") == {}


def test_a_pipeline_name_is_checked_and_the_error_lists_the_pipelines(
    project: Project, folder: Path, capsys: pytest.CaptureFixture[str]
):
    _define(folder, "web", {})
    _define(folder, "backend", {})
    for name in ("no_such", "bad-name"):
        assert project.cli("status", "--pipeline", name) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].endswith("pipelines: backend, web"), err


def test_a_database_of_the_release_before_is_pipeline_default(database_url, monkeypatch):
    """Its watermark and dead letters are the default pipeline's; a new pipeline's state starts empty."""
    from test_migrations import _old_database

    from eventpipe.settings import load_settings
    from eventpipe.storage.store import Store

    _old_database(database_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    default = Store(load_settings(None, []))
    default.create_schema()
    other = Store(load_settings(None, ["pipeline.name=backend"]))
    other.create_schema()
    try:
        assert default.watermark() == datetime(2024, 5, 1, 10, tzinfo=timezone.utc)
        assert [r["id"] for r in default.pending_dead_letters()] == [1]
        assert [r["run_id"] for r in default.recent_runs()] == ["old-run"]
        assert other.watermark() is None and other.pending_dead_letters() == []
        assert other.recent_runs() == [] and other.t.analytics.name == "analytics_backend"
        (entry,) = default.pipelines()
        assert entry["pipeline"] == "default" and entry["dead_letters_pending"] == 1
        assert entry["health"] == "ok" and entry["watermark"].startswith("2024-05-01T10:00")
    finally:
        default.dispose()
        other.dispose()


def test_window_locks_are_a_pipelines_own(database_url, monkeypatch):
    """Two pipelines claim overlapping windows at once; a second claim of one pipeline's window is refused."""
    from eventpipe.errors import RunInProgress
    from eventpipe.settings import load_settings
    from eventpipe.storage.lock import WindowLocks
    from eventpipe.storage.store import Store

    monkeypatch.setenv("DATABASE_URL", database_url)
    default = Store(load_settings(None, []))
    backend = Store(load_settings(None, ["pipeline.name=backend"]))
    default.create_schema()
    since = datetime(2024, 5, 1, tzinfo=timezone.utc)
    try:
        with WindowLocks(default).hold(since, since + 6 * HOUR, "default-run"):
            with WindowLocks(backend).hold(since + HOUR, since + 2 * HOUR, "backend-run"):
                with pytest.raises(RunInProgress) as caught:
                    with WindowLocks(backend).hold(since, since + 3 * HOUR, "backend-again"):
                        pass
                assert "backend-run" in str(caught.value)
            with pytest.raises(RunInProgress) as caught:
                with WindowLocks(default).hold(since + 5 * HOUR, since + 7 * HOUR, "default-again"):
                    pass
            assert "default-run" in str(caught.value)
    finally:
        default.dispose()
        backend.dispose()


def test_backfill_and_replay_keep_to_their_pipeline(
    project: Project, api: Api, backend_api: Api, folder: Path, capsys: pytest.CaptureFixture[str]
):
    """A window backfilled for one pipeline is still to do for the other; a replay sees its own letters."""
    url = project.database_url
    start = backend_api.data.config.start
    window = ["--start", start.isoformat(), "--end", (start + 3 * HOUR).isoformat(), "--chunk", "3h"]
    _backend(folder, backend_api, start)
    assert project.cli("backfill", "--pipeline", "backend", *window) == 0
    assert _rows(url, "analytics_backend") == expected_table(backend_api, start, start + 3 * HOUR)
    assert (
        project.cli("backfill", *window, "-p", "quality.min_pass_rate=0.8") == 0
    )  # not skipped: default's own
    assert table_rows(url) == expected_table(api, start, start + 3 * HOUR)
    assert query(url, "SELECT count(*) FROM pipeline_state") == [(0,)]  # a backfill moves no watermark

    pending = dict(
        query(url, "SELECT pipeline, count(*) FROM dead_letter WHERE status = 'pending' GROUP BY pipeline")
    )
    assert pending["backend"] != pending["default"]
    capsys.readouterr()
    assert project.cli("replay-dlq", "--pipeline", "backend", "--dry-run") == 0
    assert f"of {pending['backend']} pending dead letters" in capsys.readouterr().out


# -- the shared table: pipeline.shared, a source column in the key ----------------------------------


def _shared_rows(database_url: str) -> dict[str, dict]:
    """The shared table ``events`` by source, each as ``table_rows`` gives ``analytics``."""
    out: dict[str, dict] = {}
    for source, user, ts, event, props, session in query(
        database_url, 'SELECT source, user_id, "timestamp", event_type, properties, session_id FROM events'
    ):
        ts = datetime.fromisoformat(ts) if isinstance(ts, str) else ts
        ms = round((ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)).timestamp() * 1000)
        out.setdefault(source, {})[(user, ms, event)] = (
            props if isinstance(props, dict) else json.loads(props),
            session,
        )
    return out


@pytest.fixture
def same_events_api(api: Api) -> Iterator[Api]:
    """The ``api`` fixture's very events in json-server's wire format: every key of one source is also the
    other's, so only the ``source`` column keeps their rows apart."""
    a = start_api(api.data.config, style="json-server")
    yield a
    a.server.stop()


def _shared(
    folder: Path, name: str, api: Api, style: str, shared: bool = True, table: str = "events"
) -> None:
    sections: dict = {}
    if style == "json-server":
        sections = yaml.safe_load((ROOT / "params" / "sources" / "json-server.yaml").read_text())
    sections.setdefault("api", {})["base_url"] = api.url
    sections["quality"] = {"min_pass_rate": 0.8}
    sections["pipeline"] = {"table": table, "shared": shared}
    _define(folder, name, sections)


@pytest.fixture
def no_shared_table(database_url: str) -> Iterator[None]:
    yield
    engine = create_engine(normalise_database_url(database_url))
    with engine.begin() as conn:
        for table in ("events", "own_events"):
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


def test_a_shared_table_holds_both_sources_rows_keyed_by_source(
    project: Project, api: Api, same_events_api: Api, folder: Path, no_shared_table: None
):
    url = project.database_url
    _shared(folder, "web", api, "contract")
    _shared(folder, "backend", same_events_api, "json-server")
    assert project.cli("run", "--all") == 0
    pipeline_of = dict(query(url, "SELECT run_id, pipeline FROM pipeline_runs"))
    (web_run,) = [r for r in runs(url) if pipeline_of[r["run_id"]] == "web"]
    expected = expected_table(api, web_run["window_since"], web_run["window_until"])
    assert expected and _shared_rows(url) == {"web": expected, "backend": expected}
    # each run counted its own rows only: the other source's identical keys were neither updates nor unchanged
    loaded = dict(query(url, "SELECT pipeline, inserted FROM pipeline_runs"))
    assert loaded == {"web": len(expected), "backend": len(expected)}

    # web's next run upserts its own rows (its overlap) and leaves backend's lineage as it was
    backend_before = query(url, "SELECT user_id, run_id, loaded_at FROM events WHERE source = 'backend'")
    assert project.cli("run", "--pipeline", "web") == 0
    assert (
        query(url, "SELECT user_id, run_id, loaded_at FROM events WHERE source = 'backend'") == backend_before
    )
    assert _shared_rows(url) == {"web": expected, "backend": expected}
    assert query(
        url,
        "SELECT pipeline, count(*) FROM pipeline_runs WHERE status = 'succeeded' GROUP BY pipeline ORDER BY 1",
    ) == [("backend", 1), ("web", 2)]


def test_a_table_shared_by_one_pipeline_and_not_the_other_stops_before_fetching(
    project: Project, api: Api, folder: Path, no_shared_table: None, capsys: pytest.CaptureFixture[str]
):
    url = project.database_url
    _shared(folder, "web", api, "contract")
    _shared(folder, "solo", api, "contract", shared=False)
    requests = api.server.requests
    for name in ("web", "solo"):  # either one names the other: both files are read before anything runs
        assert project.cli("run", "--pipeline", name) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "pipeline.shared: true in both" in err[0], err
    assert api.server.requests == requests and not project.reports.exists()  # no run was recorded

    # the database's side: a shared table loaded by a pipeline that does not say so, and the reverse
    (folder / "solo.yaml").unlink()
    assert project.cli("run", "--pipeline", "web") == 0
    (folder / "web.yaml").unlink()
    _shared(folder, "solo", api, "contract", shared=False)
    _shared(folder, "own", api, "contract", shared=False, table="own_events")
    assert project.cli("run", "--pipeline", "own") == 0
    _shared(folder, "own", api, "contract", table="own_events")
    requests = api.server.requests
    capsys.readouterr()  # the two runs' own stage lines and summaries
    for name, says in (("solo", "is a shared table"), ("own", "already exists without a source column")):
        assert project.cli("run", "--pipeline", name) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
    assert api.server.requests == requests
    assert query(url, "SELECT pipeline, count(*) FROM pipeline_runs GROUP BY pipeline ORDER BY 1") == [
        ("own", 1),
        ("web", 1),
    ]


def test_shared_without_a_table_name_is_one_line(
    project: Project, folder: Path, capsys: pytest.CaptureFixture[str]
):
    _define(folder, "web", {"pipeline": {"shared": True}})
    assert project.cli("status", "--pipeline", "web") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pipeline.shared=true needs pipeline.table" in err[0], err
