"""A stage's working folder: ``run_id`` is a plain name, and derived folders stay inside ``paths.runs_dir``."""

from __future__ import annotations

import pytest

from eventpipe.errors import SettingsError
from eventpipe.notebook.stages import StageContext


def context(tmp_path, run_id="r1", run_dir=""):
    return StageContext.from_parameters(
        "2024-05-01", "2024-05-02", run_id, run_dir, "", [f"paths.runs_dir={tmp_path / 'runs'}"]
    )


def test_a_plain_run_id_gets_its_folder_inside_runs(tmp_path):
    assert context(tmp_path).run_dir == (tmp_path / "runs" / "r1").resolve()


@pytest.mark.parametrize("run_id", ["../../victim", "a/b", "..", ".hidden", "x" * 200, "ok\n", "/etc"])
def test_a_run_id_that_is_not_a_plain_name_is_refused(tmp_path, run_id):
    with pytest.raises(SettingsError, match="not a plain name"):
        context(tmp_path, run_id=run_id)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("run_dir", ["../victim", "runs/../../victim"])
def test_a_relative_run_dir_outside_runs_is_refused(tmp_path, run_dir):
    with pytest.raises(SettingsError, match="not inside paths.runs_dir"):
        context(tmp_path, run_dir=run_dir)


def test_a_symlink_inside_runs_that_points_outside_is_refused(tmp_path, monkeypatch):
    (tmp_path / "runs").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "runs" / "r1").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(SettingsError, match="not inside paths.runs_dir"):
        context(tmp_path)


def test_an_absolute_run_dir_is_the_analysts_choice(tmp_path):
    assert context(tmp_path, run_dir=str(tmp_path / "mine")).run_dir == tmp_path / "mine"


def test_a_runs_settings_file_is_the_whole_context(tmp_path, monkeypatch):
    from datetime import datetime, timezone

    from eventpipe.settings import load_settings
    from eventpipe.settings_file import RunSettings

    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite'}", "API_KEY": "key-in-the-kernel"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("API_BASE_URL", raising=False)
    settings = load_settings(
        None, [f"paths.runs_dir={tmp_path / 'runs'}", "api.base_url=http://127.0.0.1:9"], env=env
    )
    since, until = datetime(2024, 5, 1, 6, tzinfo=timezone.utc), datetime(2024, 5, 1, 7, tzinfo=timezone.utc)
    path = RunSettings(settings, "r7", "replay", since, until, replay=True).write(
        tmp_path / "runs" / "r7" / "settings.json"
    )
    # the other parameters are a notebook's defaults: the file is what counts
    ctx = StageContext.from_parameters("2024-01-01", "2024-01-02", "notebook", settings_file=str(path))
    assert (ctx.run_id, ctx.kind, ctx.since, ctx.until) == ("r7", "replay", since, until)
    assert ctx.replay and not ctx.advance_watermark
    assert ctx.run_dir == path.parent
    assert ctx.settings.api.base_url == "http://127.0.0.1:9"
    assert ctx.settings.api_key.reveal() == "key-in-the-kernel"


def test_a_hand_run_gets_a_manual_id_of_its_own_and_a_settings_file_for_02_and_03(tmp_path):
    first, second = context(tmp_path, run_id=""), context(tmp_path, run_id="")
    assert first.run_id != second.run_id and "-manual-" in first.run_id
    assert first.kind == "manual"
    again = StageContext.from_run_folder(run_dir=str(first.run_dir))
    assert (again.run_id, again.kind, again.since, again.until) == (
        first.run_id,
        "manual",
        first.since,
        first.until,
    )


def test_a_hand_run_loads_into_its_scratch_database_unless_told_otherwise(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'warehouse.sqlite'}")
    monkeypatch.setenv("API_BASE_URL", "http://127.0.0.1:9")
    ctx = context(tmp_path)
    assert ctx.settings.database_url.reveal() == f"sqlite:///{ctx.run_dir / 'scratch.sqlite'}"
    again = StageContext.from_run_folder(run_dir=str(ctx.run_dir))
    assert again.settings.database_url.reveal() == ctx.settings.database_url.reveal()
    # papermill's -p passes "false" as text
    real = StageContext.from_parameters(
        "2024-05-01", "2024-05-02", "r2", "", "", [f"paths.runs_dir={tmp_path / 'runs'}"], "false"
    )
    assert real.settings.database_url.reveal() == f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    with pytest.raises(SettingsError, match="scratch 'no' is not true or false"):
        StageContext.from_parameters("2024-05-01", "2024-05-02", "r3", scratch="no")


def test_the_load_refuses_a_transform_whose_gate_failed(tmp_path):
    """02 shows its reasons before its gate raises; 03 run by hand after it must still load nothing."""
    from eventpipe.errors import QualityGateFailed
    from eventpipe.notebook import stages

    ctx = context(tmp_path, run_id="gate")
    ctx.run.write_manifest("extract", {"stage": "extract", "extracted": 2})
    tq = {"stage": "transform_quality", "extracted": 2, "transformed": 2, "passed": 1, "rejected_quality": 1}
    ctx.run.write_manifest(
        "transform_quality",
        {
            **tq,
            "pass_rate": 0.5,
            "min_pass_rate": 0.95,
            "reasons": {"event_not_allowed": 1},
            "gate": "failed",
        },
    )
    with pytest.raises(QualityGateFailed, match="pass rate 50.00%.*event_not_allowed"):
        stages.load(ctx)
    assert not (tmp_path / "data").exists() and not ctx.run.parts("clean")
