"""Secrets from the environment or from files (``NAME_FILE``), and keys too short to mask refused at start.

In-process: ``load_settings`` takes the environment as a mapping. (tests/e2e/test_cli_secrets.py checks the
same refusals on the command line: one line on stderr, exit code 2.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eventpipe.errors import SettingsError
from eventpipe.settings import MIN_KEY_CHARS, load_settings, read_secret
from eventpipe.source.config import SourceConfig

KEY = "sk-from-a-file-7f3a9c"
BASIC = ["source.auth={type: basic, username_env: EVENTS_USER, password_env: EVENTS_SECRET}"]


def secret_file(tmp_path: Path, text: str, name: str = "secret") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def refused(env: dict[str, str], overrides: list[str] | None = None) -> str:
    """The one line ``load_settings`` raises for this environment (a test fails if it is accepted)."""
    with pytest.raises(SettingsError) as info:
        load_settings(None, overrides or [], env=env)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value), str(info.value)
    return str(info.value)


def test_the_api_key_is_read_from_the_file_api_key_file_names_without_its_newline(tmp_path):
    s = load_settings(None, [], env={"API_KEY_FILE": secret_file(tmp_path, KEY + "\n")})
    assert s.api_key.reveal() == KEY
    assert s.redactor.redact(f"Bearer {KEY}") == "Bearer ***"


def test_the_database_url_is_read_from_a_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'from-file.sqlite'}"
    s = load_settings(None, [], env={"DATABASE_URL_FILE": secret_file(tmp_path, url + "\r\n")})
    assert s.database_url.reveal() == url


def test_the_secrets_source_auth_names_are_read_from_files_and_sent(tmp_path):
    env = {
        "EVENTS_USER_FILE": secret_file(tmp_path, "someone\n", "user"),
        "EVENTS_SECRET_FILE": secret_file(tmp_path, KEY + "\n", "password"),
    }
    s = load_settings(None, BASIC, env=env)
    assert SourceConfig.from_settings(s, env).auth.basic == ("someone", KEY)
    assert KEY not in s.redactor.redact(f"password {KEY}")


def test_a_variable_and_its_file_both_set_is_one_line(tmp_path):
    message = refused({"API_KEY": KEY, "API_KEY_FILE": secret_file(tmp_path, KEY)})
    assert "API_KEY and API_KEY_FILE are both set" in message and KEY not in message


def test_an_unreadable_secret_file_names_the_variable_and_the_path(tmp_path):
    missing = str(tmp_path / "no-such-secret")
    message = refused({"EVENTS_SECRET_FILE": missing}, BASIC)
    assert "EVENTS_SECRET_FILE" in message and missing in message


def test_a_secret_file_that_is_not_text_is_one_line(tmp_path):
    path = tmp_path / "binary"
    path.write_bytes(b"\xff\xfe\x00key")
    assert "API_KEY_FILE" in refused({"API_KEY_FILE": str(path)})


def test_every_problem_with_secrets_is_listed_one_line_each(tmp_path):
    with pytest.raises(SettingsError) as info:
        load_settings(
            None, [], env={"API_KEY": KEY, "API_KEY_FILE": "/x", "DATABASE_URL_FILE": str(tmp_path / "none")}
        )
    lines = str(info.value).splitlines()
    assert len(lines) == 2 and "API_KEY" in lines[0] and "DATABASE_URL_FILE" in lines[1]


def test_an_empty_file_variable_means_the_variable_itself():
    assert read_secret({"API_KEY": KEY, "API_KEY_FILE": ""}, "API_KEY") == KEY


@pytest.mark.parametrize("key", ["k", "ab", "k-1234", "x" * (MIN_KEY_CHARS - 1)])
def test_an_api_key_shorter_than_8_characters_is_refused_without_echoing_it(key):
    message = refused({"API_KEY": key})
    assert "API_KEY" in message and str(MIN_KEY_CHARS) in message and f" {key} " not in f" {message} "


def test_a_short_key_from_a_file_is_refused_too(tmp_path):
    assert "API_KEY" in refused({"API_KEY_FILE": secret_file(tmp_path, "abc\n")})


def test_a_short_source_password_is_refused_but_a_short_user_name_is_not():
    assert "EVENTS_SECRET" in refused({"EVENTS_USER": "someone", "EVENTS_SECRET": "pw"}, BASIC)
    s = load_settings(None, BASIC, env={"EVENTS_USER": "al", "EVENTS_SECRET": KEY})
    assert s.auth_secrets[0].reveal() == "al"


def test_a_key_of_8_characters_and_no_key_at_all_are_accepted():
    assert (
        load_settings(None, [], env={"API_KEY": "x" * MIN_KEY_CHARS}).api_key.reveal() == "x" * MIN_KEY_CHARS
    )
    assert not load_settings(None, [], env={}).api_key
