"""Named pipelines: one params YAML per pipeline in ``params/pipelines/<name>.yaml``, found by its name.

A pipeline is a name plus its parameter set (dlt's ``pipeline_name``, Meltano's file per plugin). The
pipeline ``default`` is what runs without ``--pipeline``: ``params/pipelines/default.yaml`` when there is
one, else ``params/default.yaml`` as before pipelines existed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import SettingsError
from .coerce import _IDENT_RE as _NAME_RE  # a name becomes part of its table's: an SQL identifier
from .project import PROJECT_ROOT
from .schema import DEFAULT_PIPELINE, Settings
from .values import shown

PIPELINES_DIR = PROJECT_ROOT / "params" / "pipelines"
DEFAULT_PARAMS = PROJECT_ROOT / "params" / "default.yaml"


def pipeline_names() -> list[str]:
    """The pipelines defined in ``params/pipelines/``, in name order (what ``run --all`` runs)."""
    return sorted(p.stem for p in PIPELINES_DIR.glob("*.yaml") if _NAME_RE.fullmatch(p.stem))


def pipeline_params(name: str) -> Path | None:
    """The params file of pipeline ``name`` (None: ``default`` without one); one line naming those there are
    when ``name`` is no plain identifier or no such pipeline exists."""
    if not _NAME_RE.fullmatch(name):
        raise SettingsError(
            f"--pipeline {shown(name)}: a pipeline's name is a plain identifier (letters, digits, _)"
            f"; pipelines: {_listed()}"
        )
    path = PIPELINES_DIR / f"{name}.yaml"
    if path.is_file():
        return path
    if name == DEFAULT_PIPELINE:
        return DEFAULT_PARAMS if DEFAULT_PARAMS.is_file() else None
    raise SettingsError(f"--pipeline {name}: no params/pipelines/{name}.yaml; pipelines: {_listed()}")


def _listed() -> str:
    return ", ".join(pipeline_names()) or "none yet"


def named_pipeline(settings: Settings, name: str, params: str | None) -> Settings:
    """``settings`` of pipeline ``name``: its file names no other pipeline (``pipeline.name`` unset or ``name``)."""
    given = settings.pipeline.name
    if given not in (DEFAULT_PIPELINE, name):
        raise SettingsError(
            f"--pipeline {name}: {params} sets pipeline.name={shown(given)}: a pipeline's name is its file's"
        )
    return dataclasses.replace(settings, pipeline=dataclasses.replace(settings.pipeline, name=name))
