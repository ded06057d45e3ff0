"""``run_pipeline.py params``: every parameter readable at 80 columns, no word split across lines."""

from __future__ import annotations

import pytest

from eventpipe.cli.render import param_lines
from eventpipe.settings import known_params
from support import run_cli


def meanings(lines: list[str]) -> list[str]:
    """Each parameter's meaning as printed (the lines indented by four spaces under it), joined again."""
    groups: list[list[str]] = []
    for line in lines[2:]:
        if not line.startswith(" "):
            groups.append([])
        elif not line.startswith(" " * 5):
            groups[-1].append(line.strip())
    return [" ".join(g) for g in groups]


@pytest.mark.parametrize("width", [80, 60])
def test_every_line_fits_and_every_meaning_is_whole(width):
    lines = param_lines(known_params(), width)
    # a line may overflow only with one word too long to fit (a word is never split)
    assert all(len(line) <= width or len(line.split()) == 1 for line in lines), max(lines, key=len)
    assert meanings(lines) == [help_text for _, _, help_text in known_params().values()]


def test_each_parameter_starts_a_line_with_its_type_and_default():
    lines = param_lines(known_params(), 80)
    for key, (type_name, _, _) in known_params().items():
        assert any(line.split()[:2] == [key, type_name] for line in lines), key


def test_params_in_a_pipe_is_80_columns_wide(tmp_path):
    proc = run_cli(tmp_path, "params")
    assert proc.returncode == 0, proc.stderr
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80
    assert "api.per_page" in proc.stdout and "quality.allowed_events" in proc.stdout
