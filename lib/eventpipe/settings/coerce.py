"""Parameters: ``section.key`` values from params YAML and ``-p`` coerced to the schema's types and checked.

Each problem is one line: an unknown parameter (with the one probably meant), a value of the wrong type,
a value out of range.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from typing import Any

from .schema import DEFAULT_PIPELINE, SECTIONS, QualitySettings
from .values import _to_plain, parse_duration, parse_instant, shown

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ALERT_EVENTS = ("failure", "success", "recovery", "quiet")
# the tables every pipeline shares (``storage/tables.py``): no pipeline's destination
STATE_TABLES = ("pipeline_runs", "pipeline_state", "dead_letter", "run_locks", "eventpipe_schema_version")


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


def _closest(key: str, known: dict[str, Any]) -> str | None:
    """The parameter ``key`` probably means: the one with the same name in another section, else the
    closest spelling (a typo, a missing or misspelt section)."""
    name = key.split(".")[-1]
    same_name = [k for k in known if k.split(".")[-1] == name]
    close = same_name or difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    return close[0] if close else None


def build_sections(
    values: dict[str, Any], sources: list[tuple[str, dict[str, Any]]]
) -> tuple[dict[str, Any], list[str]]:
    """Each section's settings object from ``values`` and the ``(origin, {section.key: value})`` sources laid
    over them in order, and a line per unknown parameter or value that cannot be coerced."""
    known = known_params()
    values = dict(values)
    problems: list[str] = []
    for origin, mapping in sources:
        for key, value in mapping.items():
            if key not in known and _nest(values, key, value):
                continue
            if key not in known:
                close = _closest(key, known)
                hint = f" (did you mean {close}?)" if close else " (see `run_pipeline.py params`)"
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
    return {section: cls(**sections[section]) for section, cls in SECTIONS.items()}, problems


def value_problems(built: dict[str, Any], problems: list[str]) -> list[str]:
    """A line per setting out of its range or malformed, unless ``problems`` already names that parameter."""
    api = built["api"]
    q: QualitySettings = built["quality"]
    found: list[str] = []
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
            found.append(
                f"parameter {key}={shown(_to_plain(getattr(built[key.split('.')[0]], key.split('.')[1])))} is out of range"
            )
    for key in ("load.schema", "pipeline.name", "pipeline.table"):
        section, name = key.split(".")
        value = getattr(built[section], name)
        if (value or key == "pipeline.name") and not _IDENT_RE.fullmatch(value):
            found.append(f"parameter {key}={shown(value)} is not a plain SQL identifier")
    pipeline = built["pipeline"]
    if pipeline.table_name in STATE_TABLES or (
        pipeline.name != DEFAULT_PIPELINE and pipeline.table_name == "analytics"
    ):
        found.append(
            f"parameter pipeline.table={shown(pipeline.table)} is a table of the pipelines' state or of "
            "pipeline default: name a table of this pipeline's own"
        )
    if pipeline.shared and not pipeline.table:
        found.append(
            "parameter pipeline.shared=true needs pipeline.table: name the table the pipelines share, "
            "e.g. pipeline: {table: events, shared: true}"
        )
    alerts, schedule = built["alerts"], built["schedule"]
    for i, name in enumerate(alerts.channels, 1):
        if not ENV_NAME_RE.fullmatch(str(name)):  # perhaps a URL with its token: never echoed
            found.append(
                f"parameter alerts.channels: item {i} is not an environment variable's name: name the "
                "variable that holds the channel's URL (e.g. ALERT_WEBHOOK_URL), never the URL itself"
            )
    unknown = [e for e in alerts.on if e not in ALERT_EVENTS]
    if unknown:
        found.append(f"parameter alerts.on lists {shown(unknown[0])}: use {', '.join(ALERT_EVENTS)}")
    if alerts.quiet_runs < 1 or not 0 < alerts.timeout_s <= 300:
        found.append("parameter alerts.quiet_runs must be at least 1 and alerts.timeout_s in (0, 300]")
    if schedule.every and schedule.cron:
        found.append("parameters schedule.every and schedule.cron are both set: give one")
    if not q.allowed_events:
        found.append("parameter quality.allowed_events is empty: list at least one event type")
    if built["window"].initial_since:
        try:
            parse_instant(built["window"].initial_since)
        except ValueError as e:
            found.append(f"parameter window.initial_since: {e}")
    return found
