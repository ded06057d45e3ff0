"""Counts in words that agree with them: ``1 attempt``, ``2 attempts``, ``20,524 records``."""

from __future__ import annotations

# nouns whose plural is not the noun and an ``s``
_PLURALS = {"entry": "entries", "retry": "retries"}


def counted(n: int, noun: str) -> str:
    """``n`` with thousands separators and ``noun`` in the number that agrees with it."""
    return f"{n:,} {noun if n == 1 else _PLURALS.get(noun, noun + 's')}"
