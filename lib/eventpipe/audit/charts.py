"""SVG bar charts for the run pages, drawn when a report is built (never in the pipeline's hot path).

Plain SVG text, no plotting library: every label is escaped, so an event name or a
reject reason carrying markup renders as text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from html import escape

HOURLY_LIMIT = 72  # windows longer than three days are drawn per day
BAR = "#4c78a8"


def events_over_time(per_hour: Mapping[str, int]) -> tuple[list[str], list[int], str]:
    """Hour -> count as labels and values: per hour, or per day when the window has more than 72 hours."""
    hours = sorted((datetime.fromisoformat(k.replace("Z", "+00:00")), int(v)) for k, v in per_hour.items())
    if not hours:
        return [], [], "hour"
    span_h = (hours[-1][0] - hours[0][0]).total_seconds() / 3600 + 1
    if span_h <= HOURLY_LIMIT:
        return [f"{t:%m-%d %H:00}" for t, _ in hours], [v for _, v in hours], "hour"
    days: Counter = Counter()
    for t, v in hours:
        days[f"{t:%Y-%m-%d}"] += v
    labels = sorted(days)
    return labels, [days[d] for d in labels], "day"


def column_chart(
    labels: list[str],
    values: list[int],
    title: str,
    unit: str = "events",
    width: int = 900,
    height: int = 260,
) -> str:
    """Vertical bars over time (labels thinned to about twelve along the axis)."""
    if not values:
        return _empty(title, width)
    left, right, top, bottom = 56, 12, 28, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(max(values), 1)
    step = plot_w / len(values)
    parts = [_frame(title, width, height)]
    for frac in (0, 0.5, 1):
        y = top + plot_h * (1 - frac)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{_k(peak * frac)}</text>'
        )
    every = max(1, len(values) // 12)
    for i, (label, v) in enumerate(zip(labels, values)):
        h = plot_h * v / peak
        x = left + i * step
        parts.append(
            f'<rect x="{x + step * 0.1:.1f}" y="{top + plot_h - h:.1f}" width="{max(step * 0.8, 1):.1f}" '
            f'height="{h:.1f}" fill="{BAR}"><title>{escape(label)}: {v:,} {escape(unit)}</title></rect>'
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                f'font-size="10">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(items: Iterable[tuple[str, int]], title: str, width: int = 900, limit: int = 15) -> str:
    """Horizontal bars, largest first (reject reasons)."""
    rows = sorted(((str(k), int(v)) for k, v in items), key=lambda kv: (-kv[1], kv[0]))[:limit]
    if not rows:
        return _empty(title, width)
    label_w, row_h, top = 300, 22, 28
    height = top + row_h * len(rows) + 10
    peak = max(v for _, v in rows) or 1
    bar_w = width - label_w - 90
    parts = [_frame(title, width, height)]
    for i, (label, v) in enumerate(rows):
        y = top + i * row_h
        shown = label if len(label) <= 44 else label[:43] + "…"
        w = bar_w * v / peak
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" font-size="12">'
            f"<title>{escape(label)}</title>{escape(shown)}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row_h - 6}" fill="#e45756"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12">{v:,}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _frame(title: str, width: int, height: int) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" aria-label="{escape(title)}">'
        f'<text x="4" y="16" font-size="13" font-weight="bold">{escape(title)}</text>'
    )


def _empty(title: str, width: int) -> str:
    return (
        _frame(title, width, 44)
        + '<text x="4" y="36" font-size="12" fill="#666">nothing to draw</text></svg>'
    )


def _k(v: float) -> str:
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"


class Chart:
    """An SVG chart that notebooks display (``_repr_svg_``), with a one-line text form for logs."""

    def __init__(self, svg: str, text: str):
        self.svg = svg
        self.text = text

    def _repr_svg_(self) -> str:
        return self.svg

    def __repr__(self) -> str:
        return self.text


def events_chart(per_hour: Mapping[str, int]) -> Chart:
    labels, values, unit = events_over_time(per_hour)
    return Chart(
        column_chart(labels, values, f"clean events per {unit} (UTC)"),
        f"clean events per {unit}: {len(values)} {unit}s, {sum(values):,} events",
    )


def reasons_chart(reasons: Mapping[str, int]) -> Chart:
    return Chart(
        bar_chart(reasons.items(), "reject reasons (records per reason)"),
        f"reject reasons: {len(reasons)} kinds, {sum(reasons.values()):,} in all",
    )
