"""Named pipelines: one params YAML per pipeline in ``params/pipelines/<name>.yaml``, found by its name.

A pipeline is a name plus its parameter set (dlt's ``pipeline_name``, Meltano's file per plugin). The
pipeline ``default`` is what runs without ``--pipeline``: ``params/pipelines/default.yaml`` when there is
one, else ``params/default.yaml`` as before pipelines existed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from ..errors import SettingsError
from .coerce import _IDENT_RE as _NAME_RE  # a name becomes part of its table's: an SQL identifier
from .load import load_params_file, load_settings
from .project import PROJECT_ROOT
from .schema import DEFAULT_PIPELINE, PipelineSettings, Settings
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


def check_destination(settings: Settings) -> None:
    """Two pipelines of ``params/pipelines/`` that name one destination table must both say
    ``pipeline.shared: true``: else their rows would meet under one key with nothing telling them apart.
    One line naming both, before anything is fetched (the database checks the table's own columns too)."""
    me = settings.pipeline
    for name in pipeline_names():
        if name == me.name:
            continue
        try:
            flat = load_params_file(PIPELINES_DIR / f"{name}.yaml")
        except SettingsError:
            continue  # that pipeline's own runs say what is wrong with its file
        other = PipelineSettings(
            name=name, table=str(flat.get("pipeline.table") or ""), shared=flat.get("pipeline.shared") is True
        )
        same_schema = str(flat.get("load.schema") or "") == settings.load.schema
        if not same_schema or other.table_name != me.table_name or (me.shared and other.shared):
            continue
        said = {True: "shared: true", False: "not shared"}
        raise SettingsError(
            f"pipeline {me.name} ({said[me.shared]}) and pipeline {name} ({said[other.shared]}) both load "
            f"table {me.table_name}: set pipeline.shared: true in both to share it, or give each a table"
        )


def resolve_pipeline(
    name: str | None,
    params: str | None,
    overrides: Iterable[str] = (),
    *,
    require_api: bool = False,
    fallback_params: str | None = None,
) -> Settings:
    """The settings of pipeline ``name`` (None: ``default``, or ``params`` as given), ``-p`` applied, its
    destination checked against the other pipelines'. ``fallback_params``: the file read when neither names
    one (``--demo``'s ``params/demo.yaml``). What every command and orchestrator task resolves."""
    if name is not None and params:
        raise SettingsError(
            f"--pipeline {name} and --params: give one (a pipeline's params are its YAML in params/pipelines/)"
        )
    if params is None and (name is not None or fallback_params is None):
        found = pipeline_params(name or DEFAULT_PIPELINE)
        params = str(found) if found else None
    if params is None:
        params = fallback_params
    settings = load_settings(params, list(overrides), require_api=require_api)
    if name is not None:
        settings = named_pipeline(settings, name, params)
    check_destination(settings)
    return settings
