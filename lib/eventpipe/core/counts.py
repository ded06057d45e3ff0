"""The run's counts, and the rule that they add up (DESIGN.md): the one place their names are written.

The ``pipeline_runs`` columns, ``metrics.json``, the identity check and the printed tables all
derive from ``RunCounts``. Kept free of pandas so the runner can check counts without importing it.
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
    def from_mapping(cls, m: Mapping[str, Any]) -> RunCounts:
        """The counts found in ``m`` (a stage's metrics, a run row); other keys are ignored."""
        return cls(**{k: m[k] for k in cls.names() if m.get(k) is not None})

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
        """extracted = transformed + rejected(transform) + duplicates + outside_window; transformed = passed + rejected(quality);
        loaded = passed = inserted + updated + unchanged."""
        out = []
        if self.extracted != (
            self.transformed + self.rejected_transform + self.duplicates + self.outside_window
        ):
            out.append("extracted != transformed + rejected_transform + duplicates + outside_window")
        if self.transformed != self.passed + self.rejected_quality:
            out.append("transformed != passed + rejected_quality")
        if self.loaded is not None:
            if self.loaded != self.passed:
                out.append("loaded != passed")
            if self.loaded != (self.inserted or 0) + (self.updated or 0) + (self.unchanged or 0):
                out.append("loaded != inserted + updated + unchanged")
        return out

    def check(self) -> None:
        problems = self.problems()
        if problems:
            raise CountsMismatch("counts do not add up: " + "; ".join(problems) + f" ({self.as_dict()})")


LOAD_NAMES = ("loaded", "inserted", "updated", "unchanged", "dead_letters_new", "dead_letters_seen")
