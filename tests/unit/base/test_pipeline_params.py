"""Named pipelines: a name finds its params file, a bad or unknown one is one line listing those there are,
the name reaches the settings (and a run's metrics), and its destination table follows from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventpipe.core.run_metrics import RunMetrics
from eventpipe.errors import SettingsError
from eventpipe.settings import load_settings, pipelines
from eventpipe.settings.pipelines import named_pipeline, pipeline_names, pipeline_params


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "pipelines"
    path.mkdir()
    (path / "web.yaml").write_text("api: {endpoint: /events}\n")
    (path / "backend.yaml").write_text("pipeline: {table: backend_events}\n")
    monkeypatch.setattr(pipelines, "PIPELINES_DIR", path)
    monkeypatch.setattr(pipelines, "DEFAULT_PARAMS", tmp_path / "default.yaml")
    return path


def test_a_name_finds_its_file_and_default_falls_back_to_params_default(folder):
    assert pipeline_params("web") == folder / "web.yaml"
    assert pipeline_params("default") is None and pipeline_names() == ["backend", "web"]
    pipelines.DEFAULT_PARAMS.write_text("{}\n")
    assert pipeline_params("default") == pipelines.DEFAULT_PARAMS
    assert pipeline_names() == ["backend", "web"]
    (folder / "default.yaml").write_text("{}\n")
    assert pipeline_params("default") == folder / "default.yaml"
    assert pipeline_names() == ["backend", "default", "web"]


@pytest.mark.parametrize("name", ["mobile", "web-app", "../web", ""])
def test_an_unknown_or_malformed_name_is_one_line_listing_the_pipelines(folder, name):
    with pytest.raises(SettingsError) as e:
        pipeline_params(name)
    assert "\n" not in str(e.value) and str(e.value).endswith("pipelines: backend, web")


def test_the_name_and_the_table_reach_the_settings(folder):
    web = named_pipeline(load_settings(str(folder / "web.yaml"), [], env={}), "web", "web.yaml")
    assert web.pipeline.name == "web" and web.pipeline.table_name == "analytics_web"
    backend = named_pipeline(load_settings(str(folder / "backend.yaml"), [], env={}), "backend", "b")
    assert backend.pipeline.table_name == "backend_events"
    assert load_settings(None, [], env={}).pipeline.table_name == "analytics"


def test_a_file_that_names_another_pipeline_is_refused(folder):
    (folder / "web.yaml").write_text("pipeline: {name: mobile}\n")
    with pytest.raises(SettingsError, match="pipeline.name='mobile'"):
        named_pipeline(load_settings(str(folder / "web.yaml"), [], env={}), "web", "web.yaml")


@pytest.mark.parametrize("override", ["pipeline.name=a b", "pipeline.name=", "pipeline.table=x;drop"])
def test_names_that_are_no_identifier_are_settings_errors(override):
    with pytest.raises(SettingsError, match="not a plain SQL identifier"):
        load_settings(None, [override], env={})


@pytest.mark.parametrize(
    "overrides", [["pipeline.table=dead_letter"], ["pipeline.name=web", "pipeline.table=analytics"]]
)
def test_a_table_of_the_state_or_of_pipeline_default_is_no_pipelines_destination(overrides):
    with pytest.raises(SettingsError, match="name a table of this pipeline's own"):
        load_settings(None, overrides, env={})


def test_metrics_say_the_pipeline_unless_it_is_default():
    assert "pipeline" not in RunMetrics("r", "incremental", "succeeded").to_json()
    m = RunMetrics("r", "incremental", "succeeded", pipeline="web")
    assert m.to_json()["pipeline"] == "web" and RunMetrics.from_json(m.to_json()).pipeline == "web"
