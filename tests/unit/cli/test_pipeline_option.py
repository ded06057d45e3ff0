"""``--pipeline NAME`` on the command line: ``schedule`` hands it to each child run, ``--params`` beside it
and ``run --all`` with it are one-line mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventpipe.cli import main
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
    seen = {}
    monkeypatch.setattr(scheduler, "run_schedule", lambda **kw: seen.update(kw) or 0)
    assert main(["schedule", "--every", "15m", "--pipeline", "web"]) == 0
    assert seen["run_args"] == ["--pipeline", "web"]


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
