"""A source config's mistakes stop before anything is written (one line, exit 2); a data problem fails the run
with its reason; a record nobody can parse becomes a dead letter and the next run proceeds."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from sqlalchemy import create_engine

from eventpipe.settings import normalise_database_url
from eventpipe.storage.migrate import downgrade
from hostile import Hostile, contract_page, deep_record
from support import Project, assert_one_line_usage_error, query, run_cli, runs, table_rows

SINCE, UNTIL = "2024-05-01T00:00:00+00:00", "2024-05-01T06:00:00+00:00"
T0 = 1714521600  # 2024-05-01T00:00:00Z


def record(n: int) -> dict:
    return {"user_id": f"u{n}", "event": "click", "timestamp": T0 + 60 * n}


@pytest.mark.parametrize(
    "override, must_mention",
    [
        ("source.paginator.type=pages", ["source.paginator.type", "pages", "page_number"]),
        ("source.format=xml", ["source.format", "xml", "jsonl"]),
        ("source.paginator.cursor_pth=x", ["source.paginator", "cursor_pth"]),
        ("source.auth.type=oauth", ["source.auth.type", "oauth"]),
        ("source.window.format=unix", ["source.window.format", "unix", "epoch_s"]),
        ("source.fields.user=distinct_id", ["source.fields", "user"]),
        ("source.auth.token=sk-123", ["source.auth", "token"]),
    ],
)
@pytest.mark.parametrize("command", ["run", "source"])
def test_a_bad_source_config_is_one_line_and_exit_2_before_anything_is_written(
    tmp_path: Path, command, override, must_mention
):
    args = ["source", "check"] if command == "source" else ["run"]
    if override.startswith("source.paginator.cursor_pth"):
        args += ["-p", "source.paginator.type=cursor"]
    proc = run_cli(tmp_path, *args, "-p", override, "-p", f"paths.reports_dir={tmp_path / 'reports'}")
    assert_one_line_usage_error(proc, *must_mention)
    assert not (tmp_path / "reports").exists() and not (tmp_path / "x.sqlite").exists()


def test_source_check_names_a_records_path_that_matches_nothing(tmp_path: Path):
    with Hostile(lambda h, q: h.send(orjson.dumps({"results": [record(1)], "next": None}))) as api:
        proc = run_cli(tmp_path, "source", "check", API_BASE_URL=api.url)
    assert_one_line_usage_error(proc, "records path 'items'", "top-level keys: results, next")


def test_source_check_says_when_the_field_map_finds_no_user_id(tmp_path: Path):
    body = {"items": [{"distinct_id": "u1", "event": "click", "timestamp": T0}], "has_more": False}
    with Hostile(lambda h, q: h.send(orjson.dumps(body))) as api:
        bad = run_cli(tmp_path, "source", "check", API_BASE_URL=api.url)
        good = run_cli(
            tmp_path,
            "source",
            "check",
            "-p",
            "source.fields={user_id: [user_id, distinct_id], event: event, timestamp: timestamp}",
            API_BASE_URL=api.url,
        )
    assert_one_line_usage_error(bad, "source.fields.user_id", "distinct_id")
    assert good.returncode == 0, good.stderr
    assert "page_number" in good.stdout and "'items'" in good.stdout and "would load" in good.stdout


@pytest.fixture
def hostile_project(tmp_path: Path, pg_fresh_url: str, monkeypatch: pytest.MonkeyPatch):
    def make(answer):
        api = Hostile(answer)
        monkeypatch.setenv("DATABASE_URL", pg_fresh_url)
        monkeypatch.setenv("API_BASE_URL", api.url)
        monkeypatch.setenv("API_KEY", "sk-hostile-0123456789")
        return api, Project(tmp_path, pg_fresh_url)

    return make


def test_a_records_path_that_matches_nothing_fails_the_run_with_the_reason(hostile_project):
    api, project = hostile_project(lambda h, q: h.send(orjson.dumps({"results": [record(1)]})))
    with api:
        code = project.cli(
            "backfill",
            "--start",
            SINCE,
            "--end",
            UNTIL,
            "-p",
            "api.max_retries=1",
            "-p",
            "api.backoff_initial_s=0.01",
        )
    assert code == 1
    error = runs(project.database_url)[-1]["error"]
    assert "records path 'items'" in error and "top-level keys: results" in error


def test_a_record_nested_too_deep_is_a_dead_letter_and_the_next_run_proceeds(hostile_project):
    deep = deep_record("u9", T0)
    body = contract_page(record(1), deep, record(2))
    api, project = hostile_project(lambda h, q: h.send(body))
    with api:
        for _ in range(2):  # the same bad record again: still one dead letter, and the run still succeeds
            code = project.cli(
                "backfill", "--start", SINCE, "--end", UNTIL, "--rerun", "-p", "quality.min_pass_rate=0.5"
            )
            assert code == 0
    assert set(table_rows(project.database_url)) == {
        ("u1", (T0 + 60) * 1000, "click"),
        ("u2", (T0 + 120) * 1000, "click"),
    }
    [(raw, reasons, attempts)] = query(project.database_url, "SELECT raw, reasons, attempts FROM dead_letter")
    assert raw == deep.decode() and attempts == 2
    reasons = reasons if isinstance(reasons, list) else json.loads(reasons)
    assert reasons == ["record_unparseable: nested deeper than the JSON parser allows"]
    assert all(r["status"] == "succeeded" for r in runs(project.database_url))


def test_an_older_database_gains_the_outside_window_column(hostile_project):
    api, project = hostile_project(
        lambda h, q: h.send(orjson.dumps({"items": [record(1)], "has_more": False}))
    )
    with api:
        assert project.cli("backfill", "--start", SINCE, "--end", UNTIL) == 0
        engine = create_engine(normalise_database_url(project.database_url))
        downgrade(engine, "0002")  # a database from before the count existed, its first run kept
        engine.dispose()
        assert project.cli("backfill", "--start", SINCE, "--end", UNTIL, "--rerun") == 0
    assert [
        r[0]
        for r in query(project.database_url, "SELECT outside_window FROM pipeline_runs ORDER BY started_at")
    ] == [None, 0]


# -- the field map names what it reads ----------------------------------------------------------------

FULL_MAP = "source.fields={user_id: user_id, event: event, timestamp: timestamp, properties: properties}"


@pytest.mark.parametrize(
    "override, named",
    [
        ("source.fields={user_id: distinct_id, timestamp: ts}", "maps no event (event: left out)"),
        ("source.fields={user_id: null, event: event, timestamp: ts}", "maps no user_id (user_id: null)"),
        ("source.fields={user_id: u, event: e, timestamp: []}", "maps no timestamp (timestamp: [])"),
    ],
)
@pytest.mark.parametrize("command", ["run", "source"])
def test_a_field_map_without_a_required_field_stops_before_any_request(
    tmp_path: Path, command, override, named
):
    with Hostile(lambda h, q: h.send(contract_page(record(1)))) as api:
        args = ["source", "check"] if command == "source" else ["run"]
        proc = run_cli(tmp_path, *args, "-p", override, API_BASE_URL=api.url, API_KEY="sk-hostile-0123456789")
        assert api.seen == []  # nothing was asked of the API
    assert_one_line_usage_error(proc, named, "required")
    assert not (tmp_path / "x.sqlite").exists()


@pytest.mark.parametrize("session", ["left out", "null"])
def test_a_field_the_map_leaves_out_or_sets_null_is_null_not_the_records_own(hostile_project, session):
    """The records carry session_id and a map that does not name it: the table holds null, not their value."""
    sent = [{**record(n), "session_id": f"s{n}", "properties": {"k": n}} for n in (1, 2)]
    api, project = hostile_project(lambda h, q: h.send(contract_page(*sent)))
    fields = FULL_MAP if session == "left out" else FULL_MAP[:-1] + ", session_id: null}"
    with api:
        assert project.cli("backfill", "--start", SINCE, "--end", UNTIL, "-p", fields) == 0
    assert table_rows(project.database_url) == {
        (f"u{n}", (T0 + 60 * n) * 1000, "click"): ({"k": n}, None) for n in (1, 2)
    }
