"""Settings: every bad parameter, params file or environment variable is one clear line, before anything runs.

In-process: ``load_settings`` takes the environment as a mapping, so each case states exactly the
environment it runs in. (tests/e2e/test_cli_bad_input.py checks that the command line turns such an
error into one line on stderr and exit code 2.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eventpipe.errors import SettingsError
from eventpipe.settings import load_settings, mask_url, normalise_database_url, parse_instant, redact

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


# -- hostile input (issue 14) ----------------------------------------------------------------------

ALIAS_BOMB = "a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol']\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


def test_a_yaml_alias_bomb_in_a_params_file_is_refused_at_once(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("api:\n  " + ALIAS_BOMB.replace("\n", "\n  ").rstrip() + "\n", encoding="utf-8")
    assert len(bomb.read_bytes()) < 600
    message = one_line(settings_error(tmp_path, params=str(bomb)), "bomb.yaml", "aliases", "line")
    assert len(message) < 300


def test_an_anchor_alone_in_a_params_file_is_refused(tmp_path):
    path = tmp_path / "anchor.yaml"
    path.write_text("api: &shared\n  per_page: 5\n", encoding="utf-8")
    one_line(settings_error(tmp_path, params=str(path)), "anchor.yaml", "anchors")


def test_an_alias_in_an_override_is_refused(tmp_path):
    one_line(settings_error(tmp_path, "quality.allowed_events=[&a x, *a]"), "aliases")


def test_a_long_bad_value_is_echoed_only_as_a_short_prefix(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text("api:\n  per_page: [" + ", ".join(["x" * 50] * 20000) + "]\n", encoding="utf-8")
    message = one_line(settings_error(tmp_path, params=str(path)), "api.per_page", "…")
    assert len(message) < 200
    message = one_line(settings_error(tmp_path, "window.overlap=" + "9" * 100000), "window.overlap")
    assert len(message) < 300


def test_a_params_file_that_is_binary_is_one_line(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    one_line(settings_error(tmp_path, params=str(path)), "binary.yaml", "UTF-8")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:Pg@LEAKEDTAIL99@db.invalid/db",
        "postgresql://u:Pg@LEAKEDTAIL99:x@db.invalid:5432/db",
        "postgresql://u@db.invalid/db?sslmode=disable&password=Pg@LEAKEDTAIL99",
    ],
    ids=["at-in-password", "at-and-colon", "query-password"],
)
def test_mask_url_hides_every_part_of_the_password(url):
    masked = mask_url(url)
    assert "LEAKEDTAIL99" not in masked and "Pg" not in masked.split("@")[0].split("//")[-1]
    assert "db.invalid" in masked


def test_an_unencoded_at_in_the_password_stays_in_the_password():
    url = normalise_database_url("postgresql://u:Pg@LEAKEDTAIL99@db.invalid:5432/db")
    assert url == "postgresql+psycopg2://u:Pg%40LEAKEDTAIL99@db.invalid:5432/db"
    from sqlalchemy import make_url

    parsed = make_url(url)
    assert parsed.host == "db.invalid" and parsed.password == "Pg@LEAKEDTAIL99"


def test_redact_removes_the_configured_secrets_in_every_form(tmp_path):
    s = load_settings(
        None,
        [],
        env={
            "DATABASE_URL": "postgresql://u:Pg@LEAKEDTAIL99@db.invalid/db?password=QueryPw4242",
            "API_KEY": "sk-live/KEY+ab12",
        },
    )
    text = (
        'could not translate host name "LEAKEDTAIL99@db.invalid"; Pg%40LEAKEDTAIL99; '
        "Authorization: Bearer sk-live/KEY+ab12; sk-live%2FKEY%2Bab12; sk-live/KEY%2Bab12 "
        "postgresql://other:OtherPw77@h/d ?password=QueryPw4242"
    )
    clean = redact(text, s)
    for leak in ("LEAKEDTAIL99", "sk-live", "KEY+ab12", "KEY%2Bab12", "OtherPw77", "QueryPw4242"):
        assert leak not in clean, (leak, clean)
    assert "db.invalid" in clean and "Bearer ***" in clean


@pytest.mark.parametrize(
    "url",
    ["postgresql://u:pw@127.0.0.1:notaport/db", "postgresql://u:pw@127.0.0.1:99999/db"],
    ids=["not-a-number", "too-large"],
)
def test_a_database_url_with_a_bad_port_is_one_line(tmp_path, url):
    message = one_line(settings_error(tmp_path, DATABASE_URL=url), "DATABASE_URL", "port")
    assert ":pw@" not in message


def test_a_sqlite_url_with_credentials_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = one_line(settings_error(tmp_path, DATABASE_URL="sqlite://user:pass@/x.sqlite"), "sqlite")
    assert "pass@" not in message
    assert list(tmp_path.iterdir()) == []


def test_a_schema_with_a_trailing_newline_is_not_an_identifier(tmp_path):
    path = tmp_path / "schema.yaml"
    path.write_text('load:\n  schema: "abc\\n"\n', encoding="utf-8")
    message = settings_error(tmp_path, params=str(path))
    assert "load.schema" in message and "identifier" in message


@pytest.mark.parametrize(
    "override, key",
    [
        ("api.timeout_s=inf", "api.timeout_s"),
        ("api.timeout_s=.nan", "api.timeout_s"),
        ("api.backoff_max_s=-.inf", "api.backoff_max_s"),
        ("runner.cell_timeout_s=0", "runner.cell_timeout_s"),
        ("runner.cell_timeout_s=-5", "runner.cell_timeout_s"),
        ("runner.max_workers=-1", "runner.max_workers"),
        ("window.overlap=999999999d", "window.overlap"),
        ("window.overlap=-5", "window.overlap"),
        ("quality.max_future=99999999999", "quality.max_future"),
        ("paths.reports_dir=rep\x00orts", "paths.reports_dir"),
    ],
)
def test_nonsense_numbers_and_paths_are_refused_up_front(tmp_path, override, key):
    one_line(settings_error(tmp_path, override), key)


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_an_instant_beyond_the_calendar_is_a_value_error(text):
    with pytest.raises(ValueError, match="out of range"):
        parse_instant(text)
