"""Settings: environment (and ``.env``) -> params YAML -> ``-p section.key=value``, validated up front.

The package's modules, one concern each: ``schema`` (the sections and ``Secret``), ``values`` (durations,
instants, windows), ``coerce`` (values to the schema's types, their checks), ``load`` (the sources and
``load_settings``), ``urls`` (database URL, URL passwords), ``redact`` (the ``Redactor``), ``project``
(the project folder). The names other modules import are all here.
"""

from __future__ import annotations

from .coerce import known_params
from .load import (
    DEFAULT_SQLITE,
    MIN_KEY_CHARS,
    auth_env_names,
    auth_secrets,
    default_database_url,
    load_dotenv_once,
    load_params_file,
    load_settings,
    parse_override,
    read_secret,
)
from .project import PROJECT_ROOT, resolve_path
from .redact import MIN_SECRET_CHARS, Redactor, redact
from .schema import (
    SECTIONS,
    ApiSettings,
    DemoSettings,
    LineageSettings,
    LoadSettings,
    PathSettings,
    QualitySettings,
    ReportSettings,
    RunnerSettings,
    Secret,
    Settings,
    SourceSettings,
    WindowSettings,
)
from .urls import mask_url, mask_urls, normalise_database_url, url_passwords
from .values import (
    MAX_DURATION,
    _to_plain,
    format_duration,
    iso,
    parse_duration,
    parse_instant,
    parse_window,
    shown,
)

__all__ = [
    "DEFAULT_SQLITE",
    "MAX_DURATION",
    "MIN_KEY_CHARS",
    "MIN_SECRET_CHARS",
    "PROJECT_ROOT",
    "SECTIONS",
    "ApiSettings",
    "DemoSettings",
    "LineageSettings",
    "LoadSettings",
    "PathSettings",
    "QualitySettings",
    "Redactor",
    "ReportSettings",
    "RunnerSettings",
    "Secret",
    "Settings",
    "SourceSettings",
    "WindowSettings",
    "_to_plain",
    "auth_env_names",
    "auth_secrets",
    "default_database_url",
    "format_duration",
    "iso",
    "known_params",
    "load_dotenv_once",
    "load_params_file",
    "load_settings",
    "mask_url",
    "mask_urls",
    "normalise_database_url",
    "parse_duration",
    "parse_instant",
    "parse_override",
    "parse_window",
    "read_secret",
    "redact",
    "resolve_path",
    "shown",
    "url_passwords",
]
