"""Writing a run's report files: each one atomically (``jsonio.write_text_atomic``: no half file, no ``.tmp``
left by a write that fails) and through the fault-injection point ``report.write`` (``testing.inject``), so the
tests can fill the disk exactly between a committed load and its audit trail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..jsonio import write_json_atomic, write_text_atomic
from ..testing.inject import checkpoint

WRITE_POINT = "report.write"


def _injection(tmp: Path) -> None:
    checkpoint(WRITE_POINT, path=tmp.with_name(tmp.name[1:].rsplit(".", 2)[0]))  # the file it becomes


def write_text(path: Path, text: str | bytes) -> Path:
    return write_text_atomic(path, text, _injection)


def write_json(path: Path, data: Any) -> Path:
    return write_json_atomic(path, data, _injection)
