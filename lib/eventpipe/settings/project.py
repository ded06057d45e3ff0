"""Where the project lives: the folder that holds ``notebooks/`` and ``params/``, and paths relative to it."""

from __future__ import annotations

import os
from pathlib import Path


def _find_project_root() -> Path:
    """The folder that holds ``notebooks/`` and ``params/``: ``EVENTPIPE_HOME``, else the nearest one above the
    working directory, else the checkout this package is installed from (an editable install)."""
    home = os.environ.get("EVENTPIPE_HOME")
    if home:
        return Path(home).expanduser().resolve()
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "notebooks" / "01_extract.ipynb").is_file() and (folder / "params").is_dir():
            return folder
    return Path(__file__).resolve().parents[3]


PROJECT_ROOT = _find_project_root()


def resolve_path(p: str | Path) -> Path:
    """Relative paths are relative to the project root, wherever the caller runs."""
    path = Path(p).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path
