"""An unknown parameter, from ``-p`` or a params file, is one line that names the parameter probably meant."""

from __future__ import annotations

import pytest

from eventpipe.errors import SettingsError
from eventpipe.settings import load_settings


def unknown(overrides: list[str], params_file: str | None = None) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(params_file, overrides, env={})
    assert "\n" not in str(info.value) and "unknown parameter" in str(info.value)
    return str(info.value)


@pytest.mark.parametrize(
    "typo, meant",
    [
        ("api.per_pag=5", "api.per_page"),
        ("api.perpage=5", "api.per_page"),
        ("apii.timeout_s=5", "api.timeout_s"),
        ("quality.min_pass=0.9", "quality.min_pass_rate"),
        ("runner.keep_run=true", "runner.keep_runs"),
        ("quality.per_page=5", "api.per_page"),  # the right name in the wrong section
    ],
)
def test_a_misspelt_parameter_suggests_the_one_meant(typo, meant):
    assert f"(did you mean {meant}?)" in unknown([typo])


def test_a_misspelt_key_in_a_params_file_suggests_the_one_meant(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("window:\n  overlapp: 2h\n", encoding="utf-8")
    message = unknown([], str(path))
    assert "p.yaml" in message and "(did you mean window.overlap?)" in message


def test_a_parameter_like_no_other_points_to_the_list():
    message = unknown(["nosuch.key=1"])
    assert "did you mean" not in message and "run_pipeline.py params" in message
