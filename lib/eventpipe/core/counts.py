"""The run's counts, and the rule that they add up (DESIGN.md): the one place their names are written.

The ``pipeline_runs`` columns, ``metrics.json``, the identity check (``IDENTITIES``), the audit pages'
count columns and the printed tables all derive from here. Kept free of pandas so the runner can check
counts without importing it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import CountsMismatch


@dataclass
class RunCounts:
    """What one run did to its records, stage by stage (load counts stay None until the load ran)."""

    extracted: int = 0
    rejected_transform: int = 0
    duplicates: int = 0
    outside_window: int = 0
    transformed: int = 0
    passed: int = 0
    rejected_quality: int = 0
    loaded: int | None = None
    inserted: int | None = None
    updated: int | None = None
    unchanged: int | None = None
    dead_letters_new: int | None = None
    dead_letters_seen: int | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def reported(cls, m: Mapping[str, Any]) -> dict[str, int]:
        """The counts ``m`` names (a stage's metrics, a run row, ``metrics.json``), in field order; other keys
        are ignored, and a count ``m`` lacks stays absent (a run that stopped early reported only some)."""
        return {k: m[k] for k in cls.names() if m.get(k) is not None}

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> RunCounts:
        """The counts found in ``m``; the others keep their defaults."""
        return cls(**cls.reported(m))

    def load_counts(self) -> dict[str, int | None]:
        return {k: getattr(self, k) for k in LOAD_NAMES}

    def with_load(self, load: RunCounts) -> RunCounts:
        """These stage counts with the load counts of ``load``."""
        out = dataclasses.replace(self)
        for name, value in load.load_counts().items():
            setattr(out, name, value)
        return out

    @property
    def rejected(self) -> int:
        return self.rejected_transform + self.rejected_quality

    def as_dict(self) -> dict[str, int]:
        """The counts that are known (load counts only once the load ran)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def problems(self) -> list[str]:
        """Each sum of ``IDENTITIES`` these counts break, e.g. ``loaded != passed`` (the load's only once it ran)."""
        known = self.as_dict()
        return [
            f"{identity.total} != {' + '.join(parts)}"
            for identity in IDENTITIES
            for parts in identity.checkable(known)
            if not identity.adds_up(known, parts)
        ]

    def check(self) -> None:
        problems = self.problems()
        if problems:
            raise CountsMismatch("counts do not add up: " + "; ".join(problems) + f" ({self.as_dict()})")


@dataclass(frozen=True)
class Identity:
    """``total`` equals each of ``sums`` (the contract's ``loaded = passed = inserted + updated + unchanged`` has two)."""

    total: str
    sums: tuple[tuple[str, ...], ...]

    def checkable(self, known: Mapping[str, int]) -> list[tuple[str, ...]]:
        """The sums that ``known`` counts can check: the total and some of the sum's counts were reported."""
        if self.total not in known:
            return []
        return [parts for parts in self.sums if any(p in known for p in parts)]

    def adds_up(self, known: Mapping[str, int], parts: tuple[str, ...]) -> bool:
        return known[self.total] == sum(known.get(p, 0) for p in parts)


IDENTITIES = (
    Identity("extracted", (("transformed", "rejected_transform", "duplicates", "outside_window"),)),
    Identity("transformed", (("passed", "rejected_quality"),)),
    Identity("loaded", (("passed",), ("inserted", "updated", "unchanged"))),
)
LOAD_NAMES = ("loaded", "inserted", "updated", "unchanged", "dead_letters_new", "dead_letters_seen")
# a run at a glance (the index's count columns): what came in, each way a record left before the load, what was loaded
SUMMARY_NAMES = (
    "extracted",
    "rejected_transform",
    "duplicates",
    "outside_window",
    "rejected_quality",
    "loaded",
)
LABELS = {
    "rejected_transform": "rejected (transform)",
    "rejected_quality": "rejected (quality)",
    "outside_window": "outside the window",
}


def label(name: str) -> str:
    """How a page or a table heads the count ``name``."""
    return LABELS.get(name, name)
