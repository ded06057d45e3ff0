"""``--pipeline NAME`` on the command line: ``schedule`` hands it to each child run, ``--params`` beside it
and ``run --all`` with it are one-line mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventpipe.cli import main, task
from eventpipe.orchestration import scheduler
from eventpipe.settings import pipelines


@pytest.fixture(autouse=True)
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "pipelines"
    path.mkdir()
    (path / "web.yaml").write_text("api: {base_url: 'http://127.0.0.1:9'}\n")
    monkeypatch.setattr(pipelines, "PIPELINES_DIR", path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'x.sqlite'}")
    return path


def test_schedule_runs_the_pipeline_it_was_given(monkeypatch):
    seen = []
    monkeypatch.setattr(scheduler, "run_schedule", lambda schedules: seen.extend(schedules) or 0)
    assert main(["schedule", "--every", "15m", "--pipeline", "web"]) == 0
    (web,) = seen
    assert web.run_args == ["--pipeline", "web"] and web.every == "15m"


def test_schedule_all_gives_each_pipeline_its_own_schedule(folder: Path, monkeypatch):
    (folder / "web.yaml").write_text("api: {base_url: 'http://127.0.0.1:9'}\nschedule: {every: 15m}\n")
    (folder / "backend.yaml").write_text(
        "api: {base_url: 'http://127.0.0.1:9'}\nschedule: {cron: '0 * * * *'}\n"
    )
    seen = []
    monkeypatch.setattr(scheduler, "run_schedule", lambda schedules: seen.extend(schedules) or 0)
    assert main(["schedule", "--all", "-p", "api.per_page=50"]) == 0
    assert [(s.pipeline, s.every, s.cron, s.run_args) for s in seen] == [
        ("backend", "", "0 * * * *", ["-p", "api.per_page=50", "--pipeline", "backend"]),
        ("web", "15m", "", ["-p", "api.per_page=50", "--pipeline", "web"]),
    ]


@pytest.mark.parametrize(
    "schedule, words",
    [
        ("{}", "pipeline web has no schedule"),
        ("{every: 1ms}", "pipeline web: schedule.every '1ms' is too short"),
        ("{cron: 'every day'}", "pipeline web: schedule.cron 'every day'"),
        (
            "{every: 1h, cron: '0 * * * *'}",
            "pipeline web: parameters schedule.every and schedule.cron are both",
        ),
    ],
)
def test_a_pipeline_without_a_good_schedule_is_one_line(folder: Path, schedule, words, capsys):
    (folder / "web.yaml").write_text(f"api: {{base_url: 'http://127.0.0.1:9'}}\nschedule: {schedule}\n")
    assert main(["schedule", "--all"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and words in err[0], err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["run", "--pipeline", "web", "--params", "params/demo.yaml"], "give one"),
        (["run", "--all", "--pipeline", "web"], "leave out --pipeline"),
    ],
)
def test_conflicting_options_are_one_line(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and words in err[0]


def _subcommands(parser) -> dict[str, object]:
    """Every command's parser by its words (``source check`` included), from the real parser."""
    import argparse

    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _subcommands(sub)
                out.update({f"{name} {k}": v for k, v in nested.items()} if nested else {name: sub})
    return out


def test_every_command_but_the_demo_api_takes_pipeline():
    from eventpipe.cli.main import build_parser
    from eventpipe.cli.task import build_parser as task_parser

    commands = _subcommands(build_parser())
    assert {"run", "backfill", "status", "replay-dlq", "schedule", "params", "report", "source check"} <= set(
        commands
    )
    missing = [
        name
        for name, sub in commands.items()
        if name != "demo-api" and "--pipeline" not in sub._option_string_actions  # type: ignore[attr-defined]
    ]
    assert missing == []
    assert "--pipeline" in task_parser()._option_string_actions


def test_params_with_a_pipeline_shows_its_values(capsys):
    assert main(["params", "--pipeline", "web", "-p", "api.per_page=7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-3:] == ["value", "(pipeline", "web)"]
    values = {line.split()[0]: line.split()[-1] for line in lines if line[:1] not in (" ", "k")}
    assert values["api.base_url"] == '"http://127.0.0.1:9"' and values["api.per_page"] == "7"
    assert values["pipeline.name"] == '"web"' and values["pipeline.table"] == '""'


def test_the_orchestrator_task_runs_a_pipelines_settings(folder: Path, capsys):
    """``python -m eventpipe.cli.task … --pipeline web`` reads web's file: a bad one is its one line."""
    from eventpipe.cli import task

    (folder / "web.yaml").write_text("api: {base_url: 'http://127.0.0.1:9', per_page: -1}\n")
    argv = [
        "extract",
        "--run-id",
        "r1",
        "--since",
        "2024-05-01",
        "--until",
        "2024-05-02",
        "--pipeline",
        "web",
    ]
    assert task.main(argv) == 2
    assert "api.per_page" in capsys.readouterr().err
    assert task.main([*argv[:-2], "--pipeline", "nope"]) == 2
    assert "no params/pipelines/nope.yaml; pipelines: web" in capsys.readouterr().err


def test_an_orchestrators_task_runs_the_pipeline_it_names(tmp_path):
    settings = task.task_settings("web", None, [])
    assert (settings.pipeline.name, settings.api.base_url) == ("web", "http://127.0.0.1:9")
    # a DAG may keep the pipeline's params elsewhere: that file, under the pipeline's name
    other = tmp_path / "elsewhere.yaml"
    other.write_text("api: {base_url: 'http://127.0.0.1:7'}\n")
    settings = task.task_settings("web", str(other), [])
    assert (settings.pipeline.name, settings.api.base_url) == ("web", "http://127.0.0.1:7")
    assert task.task_settings("default", None, []).pipeline.name == "default"


def test_a_task_of_an_unknown_pipeline_is_bad_settings_exit_2(capsys):
    argv = [
        "extract",
        "--run-id",
        "r",
        "--since",
        "2024-05-01",
        "--until",
        "2024-05-02",
        "--pipeline",
        "mobile",
    ]
    assert task.main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: --pipeline mobile: no params/pipelines/mobile.yaml; pipelines: web"]
