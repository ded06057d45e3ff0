"""The code measured: a snapshot of lib/, notebooks/ and params/ (so edits made while the benchmark runs do not
mix into it), the environment that makes every pipeline process import it, and the child processes' command."""

from __future__ import annotations

import argparse
import compileall
import hashlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from .common import ENTRY, PY, ROOT

SNAPSHOT_PARTS = ("lib", "notebooks", "params", "run_pipeline.py", "pyproject.toml")


def snapshot_code(dest: Path) -> Path:
    """Copy the pipeline's code, so that edits made to lib/ while the benchmark runs do not mix into it, and
    compile its bytecode before anything is timed, as an installed package (or a checkout run once) has it:
    otherwise the first run measured compiles ``lib/`` in the runner, the kernel and each transform worker
    (~1 s more end to end at 1M events than the runs after it, 2026-12-05)."""
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", ".ipynb_checkpoints", "*.pyc")
    dest.mkdir(parents=True)
    for name in SNAPSHOT_PARTS:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=skip)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    if not compileall.compile_dir(str(dest / "lib"), quiet=1):
        raise SystemExit(f"the snapshot's code does not compile: {dest / 'lib'}")
    return dest


def code_sha1(root: Path) -> str:
    digest = hashlib.sha1()
    for f in sorted(
        [
            *(root / "lib" / "eventpipe").rglob("*.py"),
            *(root / "notebooks").glob("*.ipynb"),
            *(root / "params").glob("*.yaml"),
        ]
    ):
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class Code:
    """Where the measured code is (the working tree, or the snapshot of it), and the ``-p KEY=VALUE`` overrides
    given on the command line, which both the papermill and the direct runs get."""

    root: Path = ROOT
    extra_params: tuple[str, ...] = ()

    @property
    def run_pipeline(self) -> str:
        return str(self.root / "run_pipeline.py")

    def env(self) -> dict[str, str]:
        """The environment for every pipeline process: the measured code's lib/ first on the import path
        (before the editable install's /work/main/lib), so kernels import the snapshot too."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(self.root / "lib"), *filter(None, [env.get("PYTHONPATH")])])
        return env

    def params_file(self) -> str:
        default = self.root / "params" / "default.yaml"  # what the CLI picks when --params is not given
        return str(default) if default.is_file() else ""

    def override_args(self, per_page: int, tmp: Path) -> list[str]:
        """``-p KEY=VALUE`` arguments of a pipeline run whose reports and run folders go under ``tmp``."""
        overrides = [
            f"api.per_page={per_page}",
            f"paths.reports_dir={tmp / 'reports'}",
            f"paths.runs_dir={tmp / 'runs'}",
            "quality.min_pass_rate=0.9",
            *self.extra_params,
        ]
        return [arg for o in overrides for arg in ("-p", o)]

    def child_cmd(self, name: str, out: Path) -> list[str]:
        """``bench/run.py <name>`` over this code, writing its JSON to ``out`` (see ``child_parser``)."""
        root, params = str(self.root), self.params_file()
        return [PY, str(ENTRY), name, "--code-root", root, "--out", str(out), "--params-file", params]


def child_parser(name: str) -> argparse.ArgumentParser:
    """The arguments every child process takes: the measured code's root, its params file, the JSON out."""
    p = argparse.ArgumentParser(prog=f"bench/run.py {name}")
    p.add_argument("--code-root", default=str(ROOT))
    p.add_argument("--params-file", default="")
    p.add_argument("--out", required=True)
    return p


def import_measured(code_root: str) -> None:
    """Put the measured code's lib/ first, so the child's ``eventpipe`` imports are the snapshot's."""
    sys.path.insert(0, str(Path(code_root) / "lib"))
