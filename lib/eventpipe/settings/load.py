"""Where settings come from: the environment (and ``.env``), a params YAML file, ``-p section.key=value``.

``load_settings`` is the entry: it reads each source, hands the values to ``coerce`` and raises one
``SettingsError`` with a line per problem. Secrets (``API_KEY``, the password inside ``DATABASE_URL``,
the variables ``source.auth`` names) come from the environment only, each as ``NAME`` or from the file
``NAME_FILE`` names (``read_secret``), and are never part of the parameters that a notebook or a report sees.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import SettingsError
from .coerce import ENV_NAME_RE, build_sections, value_problems
from .project import PROJECT_ROOT, resolve_path
from .schema import Secret, Settings
from .urls import api_url_problem, normalise_database_url
from .values import shown

DEFAULT_SQLITE = "data/eventpipe.sqlite"
# the environment variables each source.auth type reads, and their defaults
AUTH_ENV = {
    "bearer": {"token_env": "API_KEY"},
    "api_key": {"key_env": "API_KEY"},
    "basic": {"username_env": "API_USER", "password_env": "API_KEY"},
    "none": {},
}
# the auth fields that name a user rather than a secret: their values may be short
_USER_FIELDS = {"username_env"}
# a shorter key or password is refused: the redactor cannot mask it without also masking ordinary words
MIN_KEY_CHARS = 8


class _ParamsLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: a params file is a few settings, and nested aliases expand
    exponentially (a "billion laughs" bomb) while a message formats the value."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.composer.ComposerError(
                None, None, "YAML anchors and aliases (&name, *name) are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_ParamsLoader)  # noqa: S506 (a SafeLoader subclass)


def parse_override(text: str) -> tuple[str, Any]:
    """``section.key=value`` -> (key, YAML-parsed value)."""
    if "=" not in text:
        raise SettingsError(f"-p {shown(text)}: expected section.key=value, e.g. -p api.per_page=500")
    key, _, raw = text.partition("=")
    try:
        value = _yaml(raw) if raw.strip() else ""
    except yaml.composer.ComposerError as e:
        raise SettingsError(f"-p {shown(text)}: {e.problem}") from None
    except (yaml.YAMLError, ValueError):  # e.g. an integer of more than 4300 digits: left as text
        value = raw
    return key.strip(), value


def load_params_file(path: str | Path) -> dict[str, Any]:
    p = resolve_path(path) if not Path(path).exists() else Path(path)
    if not p.is_file():
        raise SettingsError(f"params file {str(path)!r} not found: pass an existing YAML file (see params/)")
    try:
        data = _yaml(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise SettingsError(f"params file {str(path)!r} is not UTF-8 text: pass a YAML file") from None
    except OSError as e:
        raise SettingsError(f"params file {str(path)!r} cannot be read ({e.strerror})") from None
    except yaml.composer.ComposerError as e:
        mark = e.problem_mark
        where = f" at line {mark.line + 1}" if mark else ""
        raise SettingsError(f"params file {str(path)!r}{where}: {e.problem} in params files") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SettingsError(f"params file {str(path)!r} is not valid YAML{where}: fix the syntax") from None
    except ValueError as e:  # a scalar YAML cannot convert, e.g. an integer of more than 4300 digits
        raise SettingsError(
            f"params file {str(path)!r} holds a value that cannot be read: {shown(str(e))}"
        ) from None
    if not isinstance(data, dict):
        raise SettingsError(f"params file {str(path)!r} must be a mapping of sections (api:, window:, ...)")
    flat: dict[str, Any] = {}
    for section, body in data.items():
        if not isinstance(body, dict):
            raise SettingsError(f"params file {str(path)!r}: section {shown(section)} must be a mapping")
        for k, v in body.items():
            flat[f"{section}.{k}"] = v
    return flat


def default_database_url() -> str:
    """The database without ``DATABASE_URL``: the project's local SQLite file (``make demo`` loads into it)."""
    return "sqlite:///" + str(resolve_path(DEFAULT_SQLITE))


def load_dotenv_once() -> None:
    from dotenv import load_dotenv

    for candidate in (Path.cwd() / ".env", PROJECT_ROOT / ".env"):
        if candidate.is_file():
            load_dotenv(candidate, override=False)


def auth_env_names(auth: Mapping[str, Any]) -> tuple[str, ...]:
    """The environment variables whose values ``source.auth`` sends, defaults filled in (basic: user, password)."""
    return tuple(
        str(auth.get(key, name)) for key, name in AUTH_ENV.get(str(auth.get("type", "bearer")), {}).items()
    )


def read_secret(env: Mapping[str, str], name: str) -> str:
    """The secret ``name``: the variable's value, or the contents of the file that ``NAME_FILE`` names (the
    Docker and Kubernetes convention) without its trailing newline. Both set, or a file that cannot be
    read: one ``SettingsError`` line naming the variable (and the path, never the value)."""
    path = env.get(f"{name}_FILE", "")
    if not path:
        return env.get(name, "")
    if env.get(name):
        raise SettingsError(f"{name} and {name}_FILE are both set: set one of them")
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as e:
        raise SettingsError(f"{name}_FILE {path!r} cannot be read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{name}_FILE {path!r} is not UTF-8 text") from None


def _short_key_problems(auth: Mapping[str, Any], secrets: Mapping[str, str]) -> list[str]:
    """A line per key or password (``API_KEY`` and the secrets ``source.auth`` sends, not its user names)
    that is set but shorter than ``MIN_KEY_CHARS``."""
    fields = AUTH_ENV.get(str(auth.get("type", "bearer")), {})
    names = ["API_KEY", *(str(auth.get(f, n)) for f, n in fields.items() if f not in _USER_FIELDS)]
    return [
        f"{name} is shorter than {MIN_KEY_CHARS} characters: use a longer key (a short one cannot be "
        "masked in messages)"
        for name in dict.fromkeys(names)
        if 0 < len(secrets.get(name, "")) < MIN_KEY_CHARS
    ]


def auth_secrets(auth: Mapping[str, Any], env: Mapping[str, str]) -> tuple[Secret, ...]:
    """What ``source.auth`` sends that no message may show: the values of its environment variables and, for
    basic auth, the credential of the ``Authorization`` header made of them."""
    values = [env.get(name, "") for name in auth_env_names(auth)]
    if auth.get("type") == "basic" and any(values):
        values.append(base64.b64encode(":".join(values).encode()).decode())
    return tuple(Secret(v) for v in values)


def _alert_channels(
    names: Iterable[str], env: Mapping[str, str], problems: list[str]
) -> tuple[tuple[str, Secret], ...]:
    """Each ``alerts.channels`` variable and its Apprise URL, read like every secret (``NAME_FILE`` too);
    one problem line per variable that is unset or holds no URL (its value never shown)."""
    out = []
    for name in (n for n in names if ENV_NAME_RE.fullmatch(str(n))):  # the others: a problem of their own
        try:
            url = read_secret(env, name).strip()
        except SettingsError as e:
            problems.append(str(e))
            continue
        if not url:
            problems.append(
                f"parameter alerts.channels names {name}, which is not set: export {name} (or {name}_FILE) "
                "as an Apprise URL, e.g. mailto://… or json://…"
            )
        elif "://" not in url:
            problems.append(
                f"{name} (alerts.channels) holds no URL: set it to an Apprise URL, e.g. json://host/path"
            )
        else:
            out.append((name, Secret(url)))
    return tuple(out)


def load_settings(
    params_file: str | Path | None = None,
    overrides: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    require_api: bool = False,
) -> Settings:
    """Resolve and validate every setting; raise one ``SettingsError`` listing each problem."""
    if env is None:
        load_dotenv_once()
        env = os.environ
    values = {"api.base_url": env["API_BASE_URL"]} if env.get("API_BASE_URL") else {}
    sources: list[tuple[str, dict[str, Any]]] = []
    if params_file:
        sources.append((f"params file {str(params_file)!r}", load_params_file(params_file)))
    sources.append(("-p", dict(parse_override(text) for text in overrides)))
    built, problems = build_sections(values, sources)

    api_url = built["api"].base_url
    if api_url and (problem := api_url_problem(api_url)):
        problems.append(problem)
    elif not api_url and require_api:
        problems.append("API_BASE_URL is not set: export API_BASE_URL (and API_KEY), or use `run --demo`")
    problems.extend(value_problems(built, problems))

    secrets: dict[str, str] = {}
    for name in dict.fromkeys(("API_KEY", "DATABASE_URL", *auth_env_names(built["source"].auth))):
        try:
            secrets[name] = read_secret(env, name)
        except SettingsError as e:
            problems.append(str(e))
    problems.extend(_short_key_problems(built["source"].auth, secrets))
    channels = _alert_channels(built["alerts"].channels, env, problems)

    db_raw = secrets.get("DATABASE_URL", "").strip()
    if db_raw:
        try:
            db_url = normalise_database_url(db_raw)
        except SettingsError as e:
            problems.append(str(e))
            db_url = ""
    else:
        db_url = default_database_url()

    if problems:
        raise SettingsError("\n".join(problems))
    return Settings(
        **built,
        database_url=Secret(db_url),
        api_key=Secret(secrets["API_KEY"]),
        auth_secrets=auth_secrets(built["source"].auth, secrets),
        alert_channels=channels,
        params_file=str(params_file) if params_file else None,
        overrides=tuple(overrides),
    )
