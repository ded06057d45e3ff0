"""Settings: environment (and ``.env``) -> params YAML -> ``-p section.key=value``.

Everything is validated up front; each problem becomes one line of a
``SettingsError``. Secrets (``API_KEY``, the password inside ``DATABASE_URL``)
come from the environment only and are never part of the parameters that a
notebook or a report sees.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlparse

import yaml

from .errors import SettingsError

DEFAULT_SQLITE = "data/eventpipe.sqlite"


def _find_project_root() -> Path:
    """The folder that holds ``notebooks/`` and ``params/``: ``EVENTPIPE_HOME``, else the nearest one above the
    working directory, else the checkout this package is installed from (an editable install)."""
    home = os.environ.get("EVENTPIPE_HOME")
    if home:
        return Path(home).expanduser().resolve()
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "notebooks" / "01_extract.ipynb").is_file() and (folder / "params").is_dir():
            return folder
    return Path(__file__).resolve().parents[2]


PROJECT_ROOT = _find_project_root()

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# a duration setting beyond a century is a typo, and near timedelta's limits date arithmetic overflows
MAX_DURATION = timedelta(days=36500)
SHOWN_CHARS = 40


def shown(value: Any) -> str:
    """``repr(value)`` cut to a short prefix: an error message never echoes a huge (or expanded) value."""
    text = repr(value) if not isinstance(value, str) else repr(value[: SHOWN_CHARS + 1])
    return text if len(text) <= SHOWN_CHARS + 2 else text[:SHOWN_CHARS] + "…"


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """``"15m"``, ``"1h30m"``, ``"7d"``, ``"0s"`` or a number of seconds -> timedelta."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if not math.isfinite(text) or not 0 <= text <= MAX_DURATION.total_seconds():
            raise ValueError(f"{shown(text)} seconds is out of range (0 to {MAX_DURATION.days}d)")
        return timedelta(seconds=float(text))
    s = str(text).strip().lower()
    pos, total = 0, 0.0
    # each piece is matched where the previous one ended (a search over a long digit run backtracks
    # quadratically); no duration needs more than a few dozen characters
    while pos < len(s) <= 64 and (m := _DURATION_RE.match(s, pos)):
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f"{shown(text)} is not a duration (use e.g. 30s, 15m, 1h, 7d)")
    if total > MAX_DURATION.total_seconds():
        raise ValueError(f"{shown(text)} is out of range (at most {MAX_DURATION.days}d)")
    return timedelta(seconds=total)


def format_duration(td: timedelta) -> str:
    secs = int(td.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs and secs % size == 0:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def parse_instant(text: str | datetime) -> datetime:
    """An ISO 8601 date or date-time -> aware UTC datetime (no offset means UTC)."""
    if isinstance(text, datetime):
        dt = text
    else:
        s = str(text).strip()
        try:
            dt = datetime.fromisoformat(s.replace("z", "Z"))
        except ValueError:
            raise ValueError(
                f"{shown(text)} is not an ISO 8601 date or time (use e.g. 2024-05-01 or 2024-05-01T06:00:00Z)"
            ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        utc = dt.astimezone(timezone.utc)
        utc.timestamp()  # the instant itself must be in range, not only its wall-clock text
    except (OverflowError, ValueError):
        raise ValueError(
            f"{shown(text)} is out of range: use an instant between years 1 and 9999 UTC"
        ) from None
    return utc


def parse_window(
    since: str | datetime, until: str | datetime, names: tuple[str, str] = ("since", "until")
) -> tuple[datetime, datetime]:
    """``[since, until)`` as aware UTC datetimes; ``ValueError`` when either is not ISO 8601 or the window is empty."""
    s, u = parse_instant(since), parse_instant(until)
    if u <= s:
        raise ValueError(f"{names[0]} {iso(s)} must be before {names[1]} {iso(u)}")
    return s, u


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


class Secret:
    """A value that never prints itself."""

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


def _param(default: Any, help: str) -> Any:
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata={"help": help})
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ApiSettings:
    base_url: str = _param("", "API base URL; empty means the API_BASE_URL environment variable")
    endpoint: str = _param("/analytics", "path of the events endpoint")
    per_page: int = _param(100, "items asked for per page")
    timeout_s: float = _param(30.0, "seconds to wait for one page (connect and read)")
    max_retries: int = _param(5, "retries per page on 429, 5xx, timeouts and dropped connections")
    backoff_initial_s: float = _param(0.5, "first backoff; doubles per retry, with jitter")
    backoff_max_s: float = _param(30.0, "cap on one backoff wait (Retry-After included)")
    retry_budget_s: float = _param(300.0, "overall time a page may spend on retries")
    max_pages: int = _param(100_000, "backstop: a run that needs more pages than this fails (a looping API)")
    max_response_mb: float = _param(64.0, "cap on the bytes read for one response; past it the page fails")
    max_decompressed_mb: float = _param(
        64.0, "cap on one response's size after gzip/zip decompression; past it the page fails"
    )
    min_interval_s: float = _param(0.0, "minimum time between two requests (APIs with hourly quotas)")
    concurrency: int = _param(
        4, "requests in flight at once (slices, and pages fetched ahead); 1 asks one after another"
    )
    max_requests_per_s: float = _param(0.0, "one request budget for all workers; 0 means no limit")


@dataclass(frozen=True)
class SourceSettings:
    """How the events API is read, in dlt's vocabulary (see docs/sources.md); checked by ``source.config``."""

    paginator: dict = _param(
        {}, "paginator: type page_number|offset|cursor|json_link|header_link|single_page"
    )
    records: str = _param(
        "items", "path of the records list in the body, dotted; $ means the body is the list"
    )
    format: str = _param("json", "response format: json, jsonl (JSON Lines) or zip (of gzipped JSON Lines)")
    window: dict = _param(
        {}, "how since/until are sent: params, format, end, granularity, step, filter_field"
    )
    fields: dict = _param({}, "field map: user_id/event/timestamp/properties/session_id -> path(s)")
    auth: dict = _param(
        {}, "auth: type bearer|api_key|basic|none and the environment variables of its secrets"
    )
    params: dict = _param({}, "fixed query parameters sent with every request")


@dataclass(frozen=True)
class WindowSettings:
    initial_since: str = _param("", "start of the first incremental run; empty means 7 days before now")
    overlap: timedelta = _param(timedelta(hours=1), "re-read this much before the watermark (late events)")
    settle: timedelta = _param(timedelta(0), "incremental runs read up to now minus this")


@dataclass(frozen=True)
class QualitySettings:
    min_pass_rate: float = _param(0.95, "below this share of passing records the run fails and loads nothing")
    allowed_events: tuple = _param(
        ["page_view", "click", "sign_up", "purchase", "logout"], "allowed event types (after normalising)"
    )
    min_timestamp: datetime = _param(
        datetime(2020, 1, 1, tzinfo=timezone.utc), "events before this are rejected"
    )
    max_future: timedelta = _param(timedelta(hours=1), "events later than now plus this are rejected")


@dataclass(frozen=True)
class LoadSettings:
    batch_size: int = _param(100_000, "records per chunk in extract, transform and load")
    schema: str = _param("", "PostgreSQL schema for the tables; empty means the default search path")
    statement_timeout_s: float = _param(
        0.0, "PostgreSQL statement_timeout for the pipeline's sessions; 0 means none"
    )


@dataclass(frozen=True)
class PathSettings:
    reports_dir: str = _param("reports", "executed notebooks and metrics, one folder per run")
    runs_dir: str = _param("runs", "intermediate Parquet, one folder per run")
    notebooks_dir: str = _param("notebooks", "the stage notebooks the runner executes")


@dataclass(frozen=True)
class RunnerSettings:
    cell_timeout_s: int = _param(3600, "papermill execution timeout per cell (at least 1)")
    max_workers: int = _param(
        0, "cap on backfill --workers (larger values are clamped); 0 means the number of CPUs"
    )
    kernel_name: str = _param(
        "eventpipe", "Jupyter kernel the notebooks run in (`make` installs `eventpipe`)"
    )
    shared_kernel: bool = _param(
        True,
        "run the three notebooks in one kernel, started early and reset between "
        "them (saves ~2 s a run); false: a fresh kernel per notebook",
    )
    keep_runs: bool = _param(
        False, "keep runs/<run_id>/ after a successful run (always kept after a failure)"
    )
    transform_workers: int = _param(
        0,
        "processes that parse raw parts in the transform: 0 means one per CPU, 1 the kernel alone "
        "(a run of fewer than 3 parts, and each partition of a parallel backfill, uses the kernel alone)",
    )


@dataclass(frozen=True)
class DemoSettings:
    seed: int = _param(42, "seed of the synthetic events")
    events_per_hour: int = _param(120, "synthetic events per hour of event time")
    dirty_share: float = _param(0.02, "share of events broken in a way the record rules reject")
    duplicate_share: float = _param(0.02, "share of events sent again (a later copy wins)")


@dataclass(frozen=True)
class ReportSettings:
    html: bool = _param(
        True, "write HTML beside each executed notebook, a page per run and reports/index.html"
    )
    with_code: bool = _param(False, "keep the code cells in the HTML (hidden by default, for auditors)")
    prometheus: bool = _param(True, "write metrics.prom (node_exporter textfile format) in each run's folder")


@dataclass(frozen=True)
class LineageSettings:
    url: str = _param("", "OpenLineage HTTP endpoint base URL; empty: no HTTP events")
    file: str = _param("", "file that OpenLineage events are appended to as JSON lines; empty: none")
    namespace: str = _param("eventpipe", "OpenLineage namespace of the job and the output table")


SECTIONS = {
    "api": ApiSettings,
    "window": WindowSettings,
    "quality": QualitySettings,
    "load": LoadSettings,
    "paths": PathSettings,
    "runner": RunnerSettings,
    "demo": DemoSettings,
    "reports": ReportSettings,
    "lineage": LineageSettings,
    "source": SourceSettings,
}

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


@dataclass(frozen=True)
class Settings:
    api: ApiSettings
    window: WindowSettings
    quality: QualitySettings
    load: LoadSettings
    paths: PathSettings
    runner: RunnerSettings
    demo: DemoSettings
    reports: ReportSettings
    lineage: LineageSettings
    source: SourceSettings
    database_url: Secret
    api_key: Secret
    params_file: str | None = None
    overrides: tuple[str, ...] = ()

    def path(self, name: str) -> Path:
        return resolve_path(getattr(self.paths, name))


def _to_plain(value: Any) -> Any:
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def resolve_path(p: str | Path) -> Path:
    """Relative paths are relative to the project root, wherever the caller runs."""
    path = Path(p).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


_QUERY_PASSWORD = re.compile(r"([?&;](?:password|passwd|pwd|pass)=)[^&;#\s'\"]*", re.I)


def _split_userinfo(rest: str) -> int:
    """Where the userinfo of ``rest`` (a URL after ``scheme://``) ends: its last ``@`` before the query,
    so an unencoded ``@`` in a password stays in the password; -1 without one."""
    query = rest.find("?")
    return rest.rfind("@", 0, query if query >= 0 else len(rest))


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``: in the userinfo (split at its *last* ``@``, also in
    malformed URLs like ``scheme:/u:pw@h``) and in a ``password=`` query parameter."""
    url = _QUERY_PASSWORD.sub(r"\1***", url)
    m = re.fullmatch(r"([A-Za-z][A-Za-z0-9+.\-]*:/*)?(.*)", url, re.S)
    assert m is not None  # the pattern matches any text
    prefix, rest = (m.group(1) or ""), m.group(2)
    at = _split_userinfo(rest)
    if at < 0:
        return url
    userinfo = rest[:at]
    if ":" not in userinfo:
        return url
    return f"{prefix}{userinfo.split(':', 1)[0]}:***{rest[at:]}"


def url_passwords(url: str) -> list[str]:
    """Every password a URL carries (userinfo and ``password=`` query values), as written."""
    found = [m.group(0).split("=", 1)[1] for m in _QUERY_PASSWORD.finditer(url)]
    _scheme, sep, rest = url.partition("://")
    at = _split_userinfo(rest) if sep else -1
    if at >= 0 and ":" in rest[:at]:
        found.insert(0, rest[:at].split(":", 1)[1])
    return [p for p in found if p and p != "***"]


def known_params() -> dict[str, tuple[str, Any, str]]:
    """``section.key`` -> (type name, default, help), for ``--help`` and error messages."""
    out = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            out[f"{section}.{f.name}"] = (_type_name(f.type), _to_plain(default), f.metadata["help"])
    return out


def _type_name(t: Any) -> str:
    return {"timedelta": "duration", "datetime": "datetime", "tuple": "list"}.get(str(t), str(t))


def _nest(values: dict[str, Any], key: str, value: Any) -> bool:
    """``source.paginator.type=cursor``: one key inside a mapping-valued parameter; False if not one."""
    parts = key.split(".")
    head = ".".join(parts[:2])
    if len(parts) < 3 or known_params().get(head, ("",))[0] != "dict":
        return False
    target = values.setdefault(head, {})
    if not isinstance(target, dict):
        return False
    target = values[head] = _deep_copy(target)
    for name in parts[2:-1]:
        nxt = target.get(name)
        target[name] = nxt = dict(nxt) if isinstance(nxt, dict) else {}
        target = nxt
    target[parts[-1]] = value
    return True


def _deep_copy(d: dict) -> dict:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def _coerce(type_name: str, value: Any) -> Any:
    if type_name == "str":
        if value is None:
            return ""
        if isinstance(value, (dict, list)):
            raise ValueError("expected text")
        if "\x00" in str(value):
            raise ValueError("contains a NUL byte")
        return str(value)
    if type_name == "int":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("expected a whole number")
        number = int(str(value).strip()) if isinstance(value, str) else int(value)
        if not -(2**63) <= number < 2**63:  # beyond it, float() and the database's bigint overflow
            raise ValueError("out of range (a 64-bit whole number)")
        return number
    if type_name == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
        raise ValueError("expected true or false")
    if type_name == "float":
        if isinstance(value, bool):
            raise ValueError("expected a number")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError("expected a finite number")
        return number
    if type_name == "duration":
        return parse_duration(value)
    if type_name == "datetime":
        return parse_instant(value if not hasattr(value, "isoformat") else value.isoformat())
    if type_name == "dict":
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("expected a mapping (YAML key: value lines)")
        return _deep_copy(value)
    if type_name == "list":
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, int)) for v in value):
            raise ValueError("expected a list of names (YAML list or comma-separated)")
        return tuple(str(v) for v in value)
    raise ValueError(f"unsupported type {type_name}")


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


def load_dotenv_once() -> None:
    from dotenv import load_dotenv

    for candidate in (Path.cwd() / ".env", PROJECT_ROOT / ".env"):
        if candidate.is_file():
            load_dotenv(candidate, override=False)


def _check_port(url: str, authority: str) -> None:
    for host in authority.split(","):
        port = host.rsplit("]", 1)[-1].rpartition(":")[2] if ":" in host.rsplit("]", 1)[-1] else ""
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise SettingsError(
                f"DATABASE_URL {shown(mask_url(url))}: port {shown(port)} is not a number from 1 to 65535"
            )


def _encode_userinfo(url: str, rest: str) -> str:
    """``rest`` (after ``scheme://``) with user and password percent-encoded, so that an unencoded ``@``,
    ``:`` or ``/`` in a password stays in the password instead of becoming part of the host name."""
    at = _split_userinfo(rest)
    host = rest[at + 1 :]
    _check_port(url, re.split(r"[/?]", host, maxsplit=1)[0])
    if at < 0:
        return rest
    user, colon, password = rest[:at].partition(":")
    userinfo = quote(unquote(user), safe="") + (colon + quote(unquote(password), safe="") if colon else "")
    return f"{userinfo}@{host}"


def normalise_database_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and pick the driver we ship (psycopg2)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", scheme):
        raise SettingsError(
            f"DATABASE_URL {shown(mask_url(url))} is not a URL: use postgresql://user@host:5432/db or sqlite:///path.sqlite"
        )
    base = scheme.split("+", 1)[0].lower()
    if base in ("postgresql", "postgres"):
        return f"postgresql+psycopg2://{_encode_userinfo(url, rest)}"
    if base == "sqlite":
        if rest.split("/", 1)[0]:
            raise SettingsError(
                "DATABASE_URL: a sqlite:// URL names a file and takes no user, password or host: "
                "use sqlite:///relative/path.sqlite or sqlite:////absolute/path.sqlite"
            )
        return f"sqlite://{rest}"
    raise SettingsError(
        f"DATABASE_URL has unknown scheme {shown(scheme)}: use postgresql://... or sqlite:///path.sqlite"
    )


def secret_forms(settings: Settings) -> list[str]:
    """Every form in which the configured secrets may turn up in a message: the API key and each database
    password as written, decoded and percent-encoded, and the pieces of a password an unencoded ``@`` or
    ``:`` would split off. Longest first; forms under ``MIN_SECRET_CHARS`` are left out (they would match
    ordinary words)."""
    return _secret_forms(settings.api_key.reveal(), settings.database_url.reveal())


MIN_SECRET_CHARS = 4
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


@functools.lru_cache(maxsize=16)
def _secret_forms(api_key: str, database_url: str) -> list[str]:
    forms: set[str] = set()
    passwords = [unquote(p) for p in url_passwords(database_url)]
    for secret in [api_key, *passwords]:
        if not secret:
            continue
        pieces = re.split(r"[@:/]", secret) if secret in passwords else []
        for value in (secret, *pieces):
            forms.update(
                (
                    value,
                    quote(value),
                    quote(value, safe=""),
                    quote_plus(value),
                    json.dumps(value)[1:-1],
                    repr(value)[1:-1],
                )
            )
    return sorted((f for f in forms if len(f) >= MIN_SECRET_CHARS), key=len, reverse=True)


def redact(text: str, settings: Settings | None) -> str:
    """``text`` with every configured secret (see ``secret_forms``) and any URL password replaced by
    ``***``: applied to each message before it is printed or stored (run records, metrics, logs, reports)."""
    if settings is not None:
        for form in secret_forms(settings):
            if form in text:
                text = text.replace(form, "***")
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)
    return _QUERY_PASSWORD.sub(r"\1***", text)


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
    known = known_params()
    values: dict[str, Any] = {}
    problems: list[str] = []

    if env.get("API_BASE_URL"):
        values["api.base_url"] = env["API_BASE_URL"]
    sources: list[tuple[str, dict[str, Any]]] = []
    if params_file:
        sources.append((f"params file {str(params_file)!r}", load_params_file(params_file)))
    ov: dict[str, Any] = {}
    for text in overrides:
        k, v = parse_override(text)
        ov[k] = v
    sources.append(("-p", ov))
    for origin, mapping in sources:
        for key, value in mapping.items():
            if key not in known and _nest(values, key, value):
                continue
            if key not in known:
                close = [k for k in known if k.split(".")[-1] == key.split(".")[-1]]
                hint = f" (did you mean {close[0]}?)" if close else " (see `run_pipeline.py params`)"
                problems.append(f"{origin}: unknown parameter {shown(key)}{hint}")
                continue
            values[key] = value

    sections: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in values.items():
        section, name = key.split(".", 1)
        type_name = known[key][0]
        try:
            sections[section][name] = _coerce(type_name, value)
        except (ValueError, TypeError) as e:
            problems.append(f"parameter {key}={shown(value)}: {e} (type {type_name})")

    built = {}
    for section, cls in SECTIONS.items():
        built[section] = cls(**sections[section])

    api: ApiSettings = built["api"]
    q: QualitySettings = built["quality"]
    if api.base_url:
        u = urlparse(api.base_url)
        if u.scheme not in ("http", "https") or not u.netloc:
            problems.append(
                f"API base URL {shown(mask_url(api.base_url))} is not an http(s) URL: set API_BASE_URL like http://host:8000"
            )
        elif "@" in u.netloc:
            problems.append(
                f"API base URL {shown(mask_url(api.base_url))} carries credentials: refused (they would replace the "
                "configured auth); put them in the environment variables that source.auth names"
            )
    elif require_api:
        problems.append("API_BASE_URL is not set: export API_BASE_URL (and API_KEY), or use `run --demo`")
    for key, ok in (
        ("api.per_page", api.per_page >= 1),
        ("api.timeout_s", 0 < api.timeout_s < 86_400),
        ("api.max_pages", api.max_pages >= 1),
        ("api.max_response_mb", 0 < api.max_response_mb < 1e6),
        ("api.max_decompressed_mb", 0 < api.max_decompressed_mb < 1e6),
        ("api.min_interval_s", 0 <= api.min_interval_s < 86_400),
        ("api.concurrency", 1 <= api.concurrency <= 64),
        ("api.max_requests_per_s", 0 <= api.max_requests_per_s <= 1e6),
        ("api.max_retries", api.max_retries >= 0),
        ("runner.cell_timeout_s", built["runner"].cell_timeout_s >= 1),
        ("runner.max_workers", built["runner"].max_workers >= 0),
        ("runner.transform_workers", 0 <= built["runner"].transform_workers <= 64),
        ("load.statement_timeout_s", built["load"].statement_timeout_s >= 0),
        ("load.batch_size", built["load"].batch_size >= 1),
        ("quality.min_pass_rate", 0.0 <= q.min_pass_rate <= 1.0),
        ("demo.dirty_share", 0.0 <= built["demo"].dirty_share <= 0.5),
        ("demo.duplicate_share", 0.0 <= built["demo"].duplicate_share <= 0.5),
    ):
        if not ok and not any(p.startswith(f"parameter {key}=") for p in problems):
            problems.append(
                f"parameter {key}={shown(_to_plain(getattr(built[key.split('.')[0]], key.split('.')[1])))} is out of range"
            )
    if built["load"].schema and not _IDENT_RE.fullmatch(built["load"].schema):
        problems.append(f"parameter load.schema={shown(built['load'].schema)} is not a plain SQL identifier")
    if not q.allowed_events:
        problems.append("parameter quality.allowed_events is empty: list at least one event type")
    if built["window"].initial_since:
        try:
            parse_instant(built["window"].initial_since)
        except ValueError as e:
            problems.append(f"parameter window.initial_since: {e}")

    db_raw = env.get("DATABASE_URL", "").strip()
    if db_raw:
        try:
            db_url = normalise_database_url(db_raw)
        except SettingsError as e:
            problems.append(str(e))
            db_url = ""
    else:
        db_url = "sqlite:///" + str(resolve_path(DEFAULT_SQLITE))

    if problems:
        raise SettingsError("\n".join(problems))
    return Settings(
        **built,
        database_url=Secret(db_url),
        api_key=Secret(env.get("API_KEY", "")),
        params_file=str(params_file) if params_file else None,
        overrides=tuple(overrides),
    )
