"""The run's counts and the rule that they add up (DESIGN.md): shared by the load stage and the runner.

Kept apart from ``stages`` so the runner can check counts without importing pandas.
"""

from __future__ import annotations

from typing import Any

from .errors import CountsMismatch

COUNT_KEYS = ("extracted", "rejected_transform", "duplicates", "transformed", "passed", "rejected_quality")


def check_counts(m: dict[str, Any]) -> None:
    """extracted = transformed + rejected(transform) + duplicates; transformed = passed + rejected(quality);
    loaded = passed = inserted + updated + unchanged."""
    problems = []
    if m["extracted"] != m["transformed"] + m["rejected_transform"] + m["duplicates"]:
        problems.append("extracted != transformed + rejected_transform + duplicates")
    if m["transformed"] != m["passed"] + m["rejected_quality"]:
        problems.append("transformed != passed + rejected_quality")
    if "loaded" in m:
        if m["loaded"] != m["passed"]:
            problems.append("loaded != passed")
        if m["loaded"] != m["inserted"] + m["updated"] + m["unchanged"]:
            problems.append("loaded != inserted + updated + unchanged")
    if problems:
        raise CountsMismatch("counts do not add up: " + "; ".join(problems) + f" ({ {k: m.get(k) for k in m} })")
