"""Secrets from files on the command line: a run whose every secret comes from ``NAME_FILE`` loads exactly
what one from the environment does; a secret that cannot be used is one line on stderr and exit 2."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from eventpipe.demo.data import DemoConfig
from eventpipe.demo.server import DEMO_USER
from support import (
    API_KEY,
    NOW,
    ROOT,
    UNSET,
    Project,
    assert_one_line_usage_error,
    expected_table,
    run_cli,
    runs,
    start_api,
    table_rows,
)

HOUR = timedelta(hours=1)


def secret_file(folder: Path, name: str, value: str) -> str:
    """``value`` in a file as a secret mount holds it: one line, ending with a newline."""
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(value + "\n", encoding="utf-8")
    return str(path)


def test_a_run_with_the_key_and_the_database_url_from_files_loads_the_table(project, api, monkeypatch):
    secrets = project.root / "secrets"
    monkeypatch.setenv("API_KEY_FILE", secret_file(secrets, "api_key", api.key))
    monkeypatch.setenv("DATABASE_URL_FILE", secret_file(secrets, "database_url", project.database_url))
    monkeypatch.delenv("API_KEY")
    monkeypatch.delenv("DATABASE_URL")
    assert project.cli("run") == 0
    run = runs(project.database_url)[-1]
    assert run["status"] == "succeeded"
    assert table_rows(project.database_url) == expected_table(api, run["window_since"], run["window_until"])


def test_a_basic_auth_source_reads_its_user_and_password_from_files(tmp_path, pg_fresh_url, monkeypatch):
    start = NOW.replace(minute=0) - 8 * HOUR
    api = start_api(DemoConfig(start=start, events_per_hour=40, end=start + 8 * HOUR), style="mixpanel")
    try:
        secrets = tmp_path / "secrets"
        monkeypatch.setenv("DATABASE_URL", pg_fresh_url)
        monkeypatch.setenv("API_BASE_URL", api.url)
        monkeypatch.delenv("API_KEY", raising=False)
        monkeypatch.setenv("MIXPANEL_USER_FILE", secret_file(secrets, "user", DEMO_USER))
        monkeypatch.setenv("MIXPANEL_SECRET_FILE", secret_file(secrets, "secret", API_KEY))
        project = Project(tmp_path, pg_fresh_url)
        since, until = start + 2 * HOUR, start + 5 * HOUR
        preset = str(ROOT / "params" / "sources" / "mixpanel.yaml")
        window = ["--start", since.isoformat(), "--end", until.isoformat()]
        assert project.cli("backfill", *window, "--params", preset) == 0
        assert table_rows(pg_fresh_url) == expected_table(api, since, until)
        for path in project.reports.rglob("*"):
            assert not path.is_file() or API_KEY.encode() not in path.read_bytes(), path
    finally:
        api.server.stop()


@pytest.mark.parametrize(
    "env, must_mention",
    [
        ({"API_KEY": "abc"}, ["API_KEY", "shorter than 8"]),
        ({"API_KEY": "sk-long-enough-1", "API_KEY_FILE": "/run/secrets/api_key"}, ["API_KEY_FILE", "both"]),
        (
            {"API_KEY_FILE": "/nonexistent/api_key"},
            ["API_KEY_FILE", "/nonexistent/api_key", "cannot be read"],
        ),
        (
            {"DATABASE_URL": UNSET, "DATABASE_URL_FILE": "/nonexistent/db"},
            ["DATABASE_URL_FILE", "/nonexistent/db"],
        ),
    ],
    ids=["short-key", "both-set", "unreadable-key-file", "unreadable-database-file"],
)
def test_a_secret_that_cannot_be_used_is_one_line_and_exit_2(tmp_path, env, must_mention):
    line = assert_one_line_usage_error(run_cli(tmp_path, "run", **env), *must_mention)
    assert "sk-long-enough-1" not in line and "abc" not in line.replace("API_KEY", "")


def test_a_short_key_from_a_file_is_refused_on_the_command_line(tmp_path):
    path = secret_file(tmp_path / "secrets", "api_key", "abc")
    assert_one_line_usage_error(run_cli(tmp_path, "run", API_KEY_FILE=path), "API_KEY", "shorter than 8")


def test_a_misspelt_parameter_gets_a_did_you_mean(tmp_path):
    assert_one_line_usage_error(
        run_cli(tmp_path, "run", "-p", "api.per_pag=5"), "api.per_pag", "did you mean api.per_page?"
    )
