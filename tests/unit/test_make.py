"""The Makefile's targets as a user runs them (``make -n``: the commands, without running them)."""

from __future__ import annotations

import subprocess

import pytest

from support import ROOT


def lab_command(user_id: str) -> str:
    lines = subprocess.run(
        ["make", "-n", "lab", f"USER_ID={user_id}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return next(line for line in lines if "jupyter lab" in line)


@pytest.mark.parametrize("user_id, allowed", [("0", True), ("1000", False)])
def test_make_lab_passes_allow_root_only_as_root(user_id, allowed):
    assert ("--allow-root" in lab_command(user_id)) is allowed
