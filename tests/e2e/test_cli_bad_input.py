"""Bad command lines: exit code 2 and one clear line on stderr, never a traceback.

Every kind of settings mistake is covered in-process by tests/unit/base/test_settings.py; here a few
of each kind check that the command line prints the error as one line and exits 2.

Each case runs ``run_pipeline.py`` as a subprocess in a clean environment (PATH,
HOME in a temp dir, a SQLite DATABASE_URL and a well-formed API_BASE_URL that
nothing listens on) and has exactly one thing wrong with it, so exactly one
line of error is expected.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eventpipe.settings import known_params
from support import UNSET, assert_one_line_usage_error, run_cli


@pytest.fixture
def bad_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "broken.yaml"
    path.write_text("api:\n  per_page: [100\nwindow:\n  overlap: 1h\n", encoding="utf-8")
    return path


# -- command line and parameters -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args, must_mention",
    [
        (["frobnicate"], ["frobnicate", "invalid choice"]),
        ([], ["command"]),
        (["run", "--bogus"], ["--bogus"]),
        (["backfill", "--end", "2024-05-01"], ["--start"]),
        (
            ["backfill", "--start", "2024-05-01", "--end", "2024-05-02", "--workers", "many"],
            ["--workers", "many"],
        ),
    ],
    ids=["unknown-command", "no-command", "unknown-option", "missing-required-option", "non-integer-workers"],
)
def test_bad_command_line_exits_2_with_one_line(tmp_path, args, must_mention):
    assert_one_line_usage_error(run_cli(tmp_path, *args), *must_mention)


def test_unknown_parameter_is_named(tmp_path):
    assert_one_line_usage_error(run_cli(tmp_path, "run", "-p", "nosuch.key=1"), "nosuch.key", "unknown")


def test_params_file_that_is_not_yaml_is_named(tmp_path, bad_yaml):
    assert_one_line_usage_error(run_cli(tmp_path, "run", "--params", str(bad_yaml)), "broken.yaml", "YAML")


# -- backfill ------------------------------------------------------------------------------------


def test_backfill_with_start_after_end_is_refused(tmp_path):
    assert_one_line_usage_error(
        run_cli(tmp_path, "backfill", "--start", "2024-05-02", "--end", "2024-05-01"),
        "--start",
        "--end",
        "before",
    )


@pytest.mark.parametrize(
    "start, end, bad",
    [
        ("notadate", "2024-05-01", "notadate"),
        ("2024-05-01", "yesterday", "yesterday"),
        ("05/01/2024", "2024-05-02", "05/01/2024"),
    ],
)
def test_backfill_with_a_date_that_is_not_iso_is_refused(tmp_path, start, end, bad):
    assert_one_line_usage_error(run_cli(tmp_path, "backfill", "--start", start, "--end", end), bad)


@pytest.mark.parametrize("chunk", ["0s", "0d"])
def test_backfill_with_zero_chunk_is_refused(tmp_path, chunk):
    assert_one_line_usage_error(
        run_cli(tmp_path, "backfill", "--start", "2024-05-01", "--end", "2024-05-02", "--chunk", chunk),
        "--chunk",
    )


def test_backfill_with_a_chunk_that_is_not_a_duration_is_refused(tmp_path):
    assert_one_line_usage_error(
        run_cli(tmp_path, "backfill", "--start", "2024-05-01", "--end", "2024-05-02", "--chunk", "daily"),
        "--chunk",
        "daily",
    )


# -- environment ---------------------------------------------------------------------------------


def test_database_url_of_unknown_engine_is_refused_without_printing_the_password(tmp_path):
    proc = run_cli(tmp_path, "run", DATABASE_URL="mysql://u:SECRETPW@h/db")
    assert_one_line_usage_error(proc, "DATABASE_URL", "mysql")
    assert "SECRETPW" not in proc.stderr + proc.stdout


def test_run_without_api_base_url_says_to_set_it_or_use_demo(tmp_path):
    assert_one_line_usage_error(run_cli(tmp_path, "run", API_BASE_URL=UNSET), "API_BASE_URL", "--demo")


def test_backfill_without_api_base_url_says_to_set_it_or_use_demo(tmp_path):
    proc = run_cli(tmp_path, "backfill", "--start", "2024-05-01", "--end", "2024-05-02", API_BASE_URL=UNSET)
    assert_one_line_usage_error(proc, "API_BASE_URL", "--demo")


# -- params --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shared", ["true", "false"])
def test_a_kernel_name_that_is_not_installed_is_named(tmp_path, shared):
    proc = run_cli(
        tmp_path, "run", "-p", "runner.kernel_name=no-such-kernel", "-p", f"runner.shared_kernel={shared}"
    )
    assert_one_line_usage_error(proc, "runner.kernel_name", "no-such-kernel", "python3")
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())


def test_params_command_exits_0(tmp_path):
    proc = run_cli(tmp_path, "params", COLUMNS="250")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "quality.min_pass_rate" in proc.stdout


def test_params_lists_every_key_in_full_when_piped(tmp_path):
    proc = run_cli(tmp_path, "params")
    assert proc.returncode == 0, proc.stderr
    missing = [key for key in known_params() if key not in proc.stdout]
    assert missing == []
