"""The field map: a record as the API sent it -> the five fields the record rules read.

``source.fields`` names, for each of ``user_id / event / timestamp / properties / session_id``, a dotted
path or a list of paths tried in order (the first one present and not null wins), optionally with a
``unit`` for numeric timestamps (``s``, ``ms``, ``us``) or keys to ``drop`` from a properties object::

    user_id: [user_id, distinct_id, properties.distinct_id, device_id]
    timestamp: {path: properties.time, unit: s}
    properties: {path: properties, drop: [time, distinct_id]}

Without a map (``fields: {}``, the default) every field reads its own name: the contract's records. A map
names every field it reads: ``properties`` or ``session_id`` left out, or ``null`` ("this API has no such
field"), is absent (null) in every record; ``user_id``, ``event`` and ``timestamp`` are required, so a
map that leaves one out (or sets it null) is a configuration error before anything is fetched. The
original record is untouched, so a dead letter keeps it exactly as the API sent it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import SettingsError
from ..rundir import UNPARSED

TARGETS = ("user_id", "event", "timestamp", "properties", "session_id")
REQUIRED = ("user_id", "event", "timestamp")  # the record rules reject every record without them
UNITS = ("s", "ms", "us")
_ABSENT = object()


@dataclass(frozen=True)
class FieldRule:
    """Where one target field comes from."""

    paths: tuple[tuple[str, ...], ...]
    unit: str = ""
    drop: tuple[str, ...] = ()

    def pick(self, record: dict) -> Any:
        """The first path's value that is present and not null; null if one was null, else absent."""
        seen_null = False
        for path in self.paths:
            v: Any = record
            for key in path:
                v = v.get(key, _ABSENT) if type(v) is dict else _ABSENT
                if v is _ABSENT:
                    break
            if v is None:
                seen_null = True
            elif v is not _ABSENT:
                return self._convert(v)
        return None if seen_null else _ABSENT

    def _convert(self, v: Any) -> Any:
        if self.drop and type(v) is dict:
            return {k: x for k, x in v.items() if k not in self.drop}
        if not self.unit or type(v) not in (int, float):
            return v
        if self.unit == "us":
            return int(v) // 1000 if type(v) is int else v / 1_000_000
        if self.unit == "ms":
            return v if abs(v) >= 1e11 else v / 1000  # the record rules read >= 1e11 as milliseconds
        return v if abs(v) < 1e11 else v * 1000  # seconds that big are beyond any sane date: keep them so


def _paths(key: str, spec: Any) -> tuple[tuple[str, ...], ...]:
    specs = spec if isinstance(spec, list) else [spec]
    if not specs or not all(isinstance(p, str) and p.strip() for p in specs):
        raise SettingsError(
            f"source.fields.{key}: expected a dotted path or a list of them, e.g. [user_id, properties.distinct_id]"
        )
    return tuple(tuple(p.strip().split(".")) for p in specs)


def _rule(key: str, spec: Any) -> FieldRule:
    if not isinstance(spec, dict):
        return FieldRule(_paths(key, spec))
    unknown = sorted(set(spec) - {"path", "unit", "drop"})
    if unknown or "path" not in spec:
        raise SettingsError(
            f"source.fields.{key}: a mapping takes path (required), unit and drop; got {sorted(spec)}"
        )
    unit = str(spec.get("unit") or "")
    if unit and unit not in UNITS:
        raise SettingsError(f"source.fields.{key}.unit {unit!r} is unknown: use one of {', '.join(UNITS)}")
    drop = spec.get("drop") or []
    if not isinstance(drop, list) or not all(isinstance(d, str) for d in drop):
        raise SettingsError(f"source.fields.{key}.drop: expected a list of keys")
    return FieldRule(_paths(key, spec["path"]), unit, tuple(drop))


def _shown(spec: Mapping[str, Any], target: str) -> str:
    return "left out" if target not in spec else "null" if spec[target] is None else "[]"


@dataclass(frozen=True)
class FieldMap:
    """Each target field's rule; ``identity`` when the API already uses the record rules' names."""

    rules: tuple[FieldRule, ...]
    identity: bool

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> FieldMap:
        """``{}``: every field reads its own name. Otherwise what ``spec`` names, and nothing else: a field
        it leaves out, sets null or to ``[]`` is absent, which the three required fields cannot be."""
        unknown = sorted(set(spec) - set(TARGETS))
        if unknown:
            raise SettingsError(f"source.fields: unknown field {unknown[0]!r}: map only {', '.join(TARGETS)}")
        if not spec:
            own = tuple(FieldRule(((t,),)) for t in TARGETS)
            return cls(own, True)
        unmapped = [t for t in REQUIRED if spec.get(t) in (None, [])]
        if unmapped:
            named = ", ".join(f"{t}: {_shown(spec, t)}" for t in unmapped)
            raise SettingsError(
                f"source.fields maps no {' / '.join(unmapped)} ({named}): a field map names every field it "
                f"reads, and {', '.join(REQUIRED)} are required; name the path that holds each "
                f"(e.g. {unmapped[0]}: {unmapped[0]})"
            )
        rules = tuple(FieldRule(()) if spec.get(t) in (None, []) else _rule(t, spec[t]) for t in TARGETS)
        identity = all(r == FieldRule(((t,),)) for r, t in zip(rules, TARGETS))
        return cls(rules, identity)

    def mapper(self) -> Callable[[list[Any]], list[Any]]:
        """Records as sent -> records with the five fields (anything but an object passes unchanged)."""
        if self.identity:
            return lambda items: items
        rules = self.rules

        def one(x: Any) -> Any:
            if type(x) is not dict or UNPARSED in x:
                return x
            out = {}
            for target, rule in zip(TARGETS, rules):
                v = rule.pick(x)
                if v is not _ABSENT:
                    out[target] = v
            return out

        return lambda items: [one(x) for x in items]

    def first_missing_user_id(self, items: list[Any]) -> bool:
        """True when no record of ``items`` yields a user_id (a field map that finds nothing)."""
        rule = self.rules[0]
        return not any(type(x) is dict and rule.pick(x) not in (_ABSENT, None) for x in items)
