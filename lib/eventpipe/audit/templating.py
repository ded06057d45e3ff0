"""The jinja2 templates of the audit pages (``templates/``): every value autoescaped, so run data shows as text."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined


def number(v: Any) -> str:
    """``1,234`` for a whole number, ``-`` for none, anything else as its text."""
    return "-" if v is None else f"{v:,}" if isinstance(v, int) else str(v)


def percent(v: Any) -> str:
    return "-" if v is None else f"{v:.2%}"


ENV = Environment(
    loader=PackageLoader("eventpipe.audit", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)
ENV.filters.update(number=number, percent=percent)


def render(name: str, **context: Any) -> str:
    return ENV.get_template(name).render(**context)
