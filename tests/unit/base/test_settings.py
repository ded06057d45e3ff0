"""Settings: every bad parameter, params file or environment variable is one clear line, before anything runs.

In-process: ``load_settings`` takes the environment as a mapping, so each case states exactly the
environment it runs in. (tests/e2e/test_cli_bad_input.py checks that the command line turns such an
error into one line on stderr and exit code 2.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eventpipe.errors import SettingsError
from eventpipe.settings import load_settings

UNSET = object()


def settings_error(tmp_path: Path, *overrides: str, params: str | None = None, **env_changes: object) -> str:
    """The message of the ``SettingsError`` these settings raise (a test fails if they are accepted)."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite'}", "API_BASE_URL": "http://127.0.0.1:9"}
    for name, value in env_changes.items():
        if value is UNSET:
            env.pop(name, None)
        else:
            env[name] = str(value)
    with pytest.raises(SettingsError) as info:
        load_settings(params, list(overrides), env=env, require_api=True)
    assert info.value.exit_code == 2
    return str(info.value)


def one_line(message: str, *must_mention: str) -> str:
    assert "\n" not in message, message
    for text in must_mention:
        assert text.lower() in message.lower(), f"{text!r} not in {message!r}"
    return message


@pytest.fixture
def bad_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "broken.yaml"
    path.write_text("api:\n  per_page: [100\nwindow:\n  overlap: 1h\n", encoding="utf-8")
    return path


def test_good_settings_resolve(tmp_path):
    s = load_settings(
        None, ["api.per_page=500"], env={"API_BASE_URL": "http://127.0.0.1:9"}, require_api=True
    )
    assert s.api.per_page == 500 and s.api.base_url == "http://127.0.0.1:9"


def test_unknown_parameter_is_named(tmp_path):
    one_line(settings_error(tmp_path, "nosuch.key=1"), "nosuch.key", "unknown")


def test_unknown_parameter_suggests_the_one_meant(tmp_path):
    assert "api.per_page" in one_line(settings_error(tmp_path, "quality.per_page=5"), "quality.per_page")


def test_parameter_of_the_wrong_type_is_named_with_its_value(tmp_path):
    one_line(settings_error(tmp_path, "api.per_page=abc"), "api.per_page", "abc")


@pytest.mark.parametrize(
    "override, key",
    [
        ("api.per_page=0", "api.per_page"),
        ("quality.min_pass_rate=1.5", "quality.min_pass_rate"),
        ("window.overlap=soon", "window.overlap"),
        ('load.schema=x"; DROP TABLE analytics; --', "load.schema"),  # names from settings are validated
    ],
)
def test_out_of_range_or_malformed_parameter_is_named(tmp_path, override, key):
    one_line(settings_error(tmp_path, override), key)


def test_override_without_equals_sign_is_explained(tmp_path):
    one_line(settings_error(tmp_path, "api.per_page"), "api.per_page", "section.key=value")


def test_missing_params_file_is_named(tmp_path):
    one_line(settings_error(tmp_path, params="/nonexistent.yaml"), "/nonexistent.yaml", "not found")


def test_params_file_that_is_not_yaml_is_named(tmp_path, bad_yaml):
    one_line(settings_error(tmp_path, params=str(bad_yaml)), "broken.yaml", "YAML")


def test_database_url_of_unknown_engine_is_refused_without_printing_the_password(tmp_path):
    msg = one_line(settings_error(tmp_path, DATABASE_URL="mysql://u:SECRETPW@h/db"), "DATABASE_URL", "mysql")
    assert "SECRETPW" not in msg


def test_database_url_that_is_not_a_url_is_refused(tmp_path):
    one_line(settings_error(tmp_path, DATABASE_URL="postgresql:/u@h:5432/db"), "DATABASE_URL")


def test_database_url_with_a_typo_in_the_scheme_does_not_print_the_password(tmp_path):
    msg = one_line(settings_error(tmp_path, DATABASE_URL="postgresql:/u:SECRETPW@h:5432/db"), "DATABASE_URL")
    assert "SECRETPW" not in msg


@pytest.mark.parametrize("url", ["not-a-url", "ftp://example.com", "http://"])
def test_api_base_url_that_is_not_http_is_refused(tmp_path, url):
    one_line(settings_error(tmp_path, API_BASE_URL=url), "API", repr(url))


def test_missing_api_base_url_says_to_set_it_or_use_demo(tmp_path):
    one_line(settings_error(tmp_path, API_BASE_URL=UNSET), "API_BASE_URL", "--demo")


def test_every_problem_is_reported_one_line_each(tmp_path):
    lines = settings_error(tmp_path, "nosuch.key=1", "api.per_page=abc", API_BASE_URL=UNSET).splitlines()
    assert len(lines) == 3, lines
    assert any("nosuch.key" in x for x in lines)
    assert any("api.per_page" in x for x in lines)
    assert any("API_BASE_URL" in x for x in lines)


def test_keep_runs_is_a_setting(tmp_path):
    assert load_settings(None, ["runner.keep_runs=true"], env={}).runner.keep_runs is True
    assert load_settings(None, [], env={}).runner.keep_runs is False
