"""Retry policy as data: which answers are retried, how long to wait, when to give up (applied by tenacity)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from tenacity import RetryCallState

from ..settings import ApiSettings


class RetryableFault(Exception):
    """One attempt failed in a way that a later attempt may not (429, 5xx, timeout, broken body)."""

    def __init__(self, kind: str, detail: str, retry_after: float | None = None):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """Which answers are retried, how long to wait, and when to give up."""

    max_retries: int = 5
    initial_s: float = 0.5
    max_wait_s: float = 30.0
    budget_s: float = 300.0
    retry_statuses: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})

    @classmethod
    def from_settings(cls, api: ApiSettings) -> RetryPolicy:
        return cls(api.max_retries, api.backoff_initial_s, api.backoff_max_s, api.retry_budget_s)

    def wait(self, state: RetryCallState) -> float:
        """Exponential backoff with full jitter; a server's ``Retry-After`` wins when present."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableFault) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.max_wait_s)
        ceiling = min(self.max_wait_s, self.initial_s * 2 ** (state.attempt_number - 1))
        return random.uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds or as an HTTP date -> seconds to wait."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
