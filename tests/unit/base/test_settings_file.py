"""A run's resolved settings file: every setting and the run's facts survive the round trip; no secret is in it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from eventpipe.errors import SettingsError
from eventpipe.settings import SECTIONS, load_settings
from eventpipe.settings_file import RunSettings, public_parameters, scratch_database_url, with_overrides

PASSWORD = "pg-p@ss:word/42"
API_KEY = "api-key-7f3a9c"
TOKEN = "source-token-5be1"
ENV = {
    "DATABASE_URL": f"postgresql://etl:{PASSWORD}@127.0.0.1:5432/events",
    "API_BASE_URL": "http://127.0.0.1:9",
    "API_KEY": API_KEY,
    "SOURCE_TOKEN": TOKEN,
}
SINCE, UNTIL = datetime(2024, 5, 1, 6, tzinfo=timezone.utc), datetime(2024, 5, 2, tzinfo=timezone.utc)
OVERRIDES = [
    "window.overlap=1500ms",
    "quality.allowed_events=click,logout",
    "quality.min_timestamp=2023-02-03T04:05:06.789Z",
    "source.auth={type: bearer, token_env: SOURCE_TOKEN}",
    'source.params={tag: "ünïcode 😀 \\x7f", n: [1, 2]}',
    "lineage.url=http://lineage:hunter2-lineage@127.0.0.1:5000",
    "load.schema=etl",
]


def resolved(env=ENV, overrides=OVERRIDES, **facts):
    settings = load_settings("params/demo.yaml", overrides, env=env)
    return RunSettings(settings, "20240502T000000-incremental-abc123", "incremental", SINCE, UNTIL, **facts)


def sections(settings):
    return {s: getattr(settings, s) for s in SECTIONS}


def test_the_file_round_trip_keeps_every_setting_and_the_runs_facts(tmp_path):
    run = resolved(replay=True, advance_watermark=True)
    back = RunSettings.read(run.write(tmp_path / "settings.json"), ENV)
    expected = sections(run.settings)
    expected["lineage"] = (
        back.settings.lineage
    )  # a URL with a password is stored masked (the runner emits lineage)
    assert sections(back.settings) == expected
    assert back.settings.lineage.url == "http://lineage:***@127.0.0.1:5000"
    assert (back.run_id, back.kind, back.since, back.until) == (run.run_id, run.kind, SINCE, UNTIL)
    assert back.replay and back.advance_watermark
    assert back.settings.params_file == "params/demo.yaml"
    assert back.settings.database_url.reveal() == run.settings.database_url.reveal()
    assert back.settings.api_key.reveal() == API_KEY


def test_no_secret_is_in_the_file(tmp_path):
    run = resolved()
    text = run.write(tmp_path / "settings.json").read_text()
    for form in [*run.settings.redactor.forms, TOKEN, "hunter2-lineage"]:
        assert form not in text
    assert json.loads(text)["settings"]["database"] == "postgresql+psycopg2://etl:***@127.0.0.1:5432/events"


def test_the_files_api_base_url_wins_over_the_environments(tmp_path):
    path = resolved().write(tmp_path / "settings.json")
    back = RunSettings.read(path, {**ENV, "API_BASE_URL": "http://elsewhere:8000"})
    assert back.settings.api.base_url == "http://127.0.0.1:9"
    no_api = RunSettings(
        load_settings(None, [], env={"DATABASE_URL": ENV["DATABASE_URL"]}), "r1", "manual", SINCE, UNTIL
    )
    demo_in_the_kernel = RunSettings.read(no_api.write(tmp_path / "none.json"), ENV)
    assert demo_in_the_kernel.settings.api.base_url == ""


def test_a_base_url_with_a_password_comes_unmasked_from_the_environment(tmp_path):
    env = {**ENV, "API_BASE_URL": "http://127.0.0.1:9/?password=q-secret-99"}
    path = resolved(env).write(tmp_path / "settings.json")
    assert "q-secret-99" not in path.read_text()
    assert RunSettings.read(path, env).settings.api.base_url == env["API_BASE_URL"]


def test_a_kernel_whose_database_is_not_the_runs_is_refused(tmp_path):
    path = resolved().write(tmp_path / "settings.json")
    with pytest.raises(SettingsError, match=r"etl:\*\*\*@127.0.0.1:5432/events"):
        RunSettings.read(path, {**ENV, "DATABASE_URL": "sqlite:///elsewhere.sqlite"})


def test_a_file_that_is_not_a_settings_file_is_one_line(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text('{"run_id": "r1"}')
    with pytest.raises(SettingsError, match="is not a run's settings file"):
        RunSettings.read(path, ENV)
    with pytest.raises(SettingsError, match="cannot be read"):
        RunSettings.read(tmp_path / "missing.json", ENV)


def test_overrides_on_resolved_settings_keep_the_rest_and_the_secrets():
    settings = resolved().settings
    changed = with_overrides(settings, ["quality.min_pass_rate=0"])
    assert changed.quality.min_pass_rate == 0
    assert changed.quality.allowed_events == ("click", "logout")
    assert changed.window.overlap == timedelta(milliseconds=1500)
    assert changed.database_url.reveal() == settings.database_url.reveal()
    assert changed.api_key.reveal() == API_KEY
    assert changed.overrides == (*OVERRIDES, "quality.min_pass_rate=0")
    assert with_overrides(settings, []) is settings


def test_the_ledgers_parameters_are_the_files():
    from eventpipe.audit import ledger

    assert ledger.public_parameters is public_parameters


def test_a_scratch_runs_database_is_the_file_in_its_folder_wherever_the_folder_is(tmp_path):
    path = resolved(scratch=True).write(tmp_path / "r1" / "settings.json")
    back = RunSettings.read(path, ENV)  # DATABASE_URL names PostgreSQL: not this run's database
    assert back.scratch
    assert back.settings.database_url.reveal() == scratch_database_url(tmp_path / "r1")
    moved = path.parent.rename(tmp_path / "r2") / "settings.json"
    assert (
        RunSettings.read(moved, ENV).settings.database_url.reveal()
        == f"sqlite:///{tmp_path / 'r2' / 'scratch.sqlite'}"
    )


def test_a_file_without_the_scratch_fact_is_not_a_scratch_run(tmp_path):
    path = resolved().write(tmp_path / "settings.json")
    data = json.loads(path.read_text())
    del data["scratch"]
    path.write_text(json.dumps(data))
    back = RunSettings.read(path, ENV)
    assert (
        not back.scratch and back.settings.database_url.reveal() == resolved().settings.database_url.reveal()
    )
