"""The package's layers (pyproject.toml, [tool.importlinter]): a module never imports a layer above its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import ROOT


def test_imports_point_down_the_layers():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run(
        [str(lint_imports), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 kept, 0 broken" in proc.stdout
