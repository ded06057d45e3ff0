"""The ``source:`` section read and checked: paginator, records path, format, window, field names, auth.

Everything a config can get wrong is found here, before anything runs, as one ``SettingsError`` line
naming the key. Secrets are read from the environment variables that ``source.auth`` names (or the files
their ``NAME_FILE`` variables name); the config holds only those names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import SettingsError
from ..settings import Redactor, Settings, auth_env_names, read_secret
from .formats import FORMATS
from .paginators import Paginator, paginator_factory, repeat_ends
from .window import WindowSpec

AUTH_TYPES = ("bearer", "api_key", "basic", "none")
_AUTH_KEYS = {
    "bearer": {"token_env", "query_env"},
    "api_key": {"name", "location", "key_env", "query_env"},
    "basic": {"username_env", "password_env", "query_env"},
    "none": set(),
}


@dataclass(frozen=True)
class Auth:
    """What a request carries to authenticate, and the environment variables it was read from (the settings'
    redactor keeps their values out of every message)."""

    type: str
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    basic: tuple[str, str] | None = None
    env_names: tuple[str, ...] = ()


def _query_env(spec: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """``query_env: {project_id: MIXPANEL_PROJECT_ID}``: query parameters the credentials go with (an account's
    project), each from an environment variable; one that is not set is not sent. Not secrets."""
    names = spec.get("query_env") or {}
    if not isinstance(names, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in names.items()
    ):
        raise SettingsError(
            "source.auth.query_env: expected query parameter -> environment variable, "
            "e.g. {project_id: MIXPANEL_PROJECT_ID}"
        )
    return {param: read_secret(env, name) for param, name in names.items() if read_secret(env, name)}


def _auth(spec: Mapping[str, Any], env: Mapping[str, str], raw_env: Mapping[str, str] | None = None) -> Auth:
    """``env``: the secrets' values by variable name; ``raw_env``: the environment (for ``query_env``)."""
    kind = str(spec.get("type", "bearer"))
    if kind not in AUTH_TYPES:
        raise SettingsError(f"source.auth.type {kind!r} is unknown: use one of {', '.join(AUTH_TYPES)}")
    unknown = sorted(set(spec) - {"type"} - _AUTH_KEYS[kind])
    if unknown:
        raise SettingsError(
            f"source.auth: {kind} takes {', '.join(sorted(_AUTH_KEYS[kind])) or 'nothing'}, not {unknown[0]!r} "
            "(name environment variables; secrets never go in params)"
        )
    if kind == "none":
        return Auth(kind)
    names = auth_env_names(spec)
    query = _query_env(spec, raw_env or {})
    if kind == "bearer":
        token = env.get(names[0], "")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return Auth(kind, headers, query=query, env_names=names)
    if kind == "api_key":
        key, param = env.get(names[0], ""), str(spec.get("name", "X-API-Key"))
        location = str(spec.get("location", "header"))
        if location not in ("header", "query"):
            raise SettingsError(f"source.auth.location {location!r}: use header or query")
        sent = {param: key} if key else {}
        if location == "header":
            return Auth(kind, headers=sent, query=query, env_names=names)
        return Auth(kind, query={**query, **sent}, env_names=names)
    # basic: a user and a password; a user alone (Mixpanel's project secret, Stripe's key) goes with an
    # empty password, which is how those APIs take a key as the user name
    user, password = env.get(names[0], ""), env.get(names[1], "")
    return Auth(kind, query=query, basic=(user, password) if user or password else None, env_names=names)


@dataclass(frozen=True)
class SourceConfig:
    """The ``source:`` section, checked."""

    paginator: Callable[[], Paginator]
    paginator_type: str
    records: str
    format: str
    window: WindowSpec
    auth: Auth
    params: dict[str, Any]
    redactor: Redactor  # the settings': it knows what ``auth`` sends (both read the same environment)
    repeat_ends: bool = False  # source.paginator.repeat: end

    @classmethod
    def from_settings(cls, settings: Settings, env: Mapping[str, str]) -> SourceConfig:
        src = settings.source
        fmt = src.format
        if fmt not in FORMATS:
            raise SettingsError(f"source.format {fmt!r} is unknown: use one of {', '.join(FORMATS)}")
        factory = paginator_factory(src.paginator, settings.api.per_page)
        kind = str(src.paginator.get("type", "page_number"))
        if fmt != "json" and factory().needs_body:
            raise SettingsError(
                f"source.paginator: {kind} reads the JSON body, but source.format is {fmt}: use "
                "single_page, header_link, or page_number/offset without has_more_path/total_path"
            )
        if not src.records.strip():
            raise SettingsError(
                "source.records is empty: name the path of the records list, or $ for the body"
            )
        auth_env = {name: read_secret(env, name) for name in auth_env_names(src.auth)}
        if settings.api_key:
            auth_env["API_KEY"] = settings.api_key.reveal()
        return cls(
            factory,
            kind,
            src.records.strip(),
            fmt,
            WindowSpec.parse(src.window),
            _auth(src.auth, auth_env, env),
            dict(src.params),
            settings.redactor,
            repeat_ends(src.paginator),
        )
