"""The pins agree: pyproject.toml's exact pins, environment.yml's and requirements.lock's."""

from __future__ import annotations

import re

import tomllib
import yaml

from support import ROOT


def _pins(specs: list[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        name, sep, version = spec.partition("==")
        assert sep, f"{spec!r} is not an exact pin"
        out[re.sub(r"[-_.]+", "-", name.strip().lower())] = version.strip()
    return out


def _project_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return _pins([*project["dependencies"], *project["optional-dependencies"]["dev"]])


def test_environment_yml_has_the_same_pins_as_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert _pins(pip) == _project_pins()


def test_the_lock_file_pins_every_top_level_package_at_its_pyproject_version():
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if m:
            lock[re.sub(r"[-_.]+", "-", m.group(1).lower())] = m.group(2)
    project = _project_pins()
    assert {k: lock.get(k) for k in project} == project
    assert len(lock) > len(project)  # transitive packages are pinned too
    assert "--hash=sha256:" in (ROOT / "requirements.lock").read_text()
