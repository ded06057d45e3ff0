"""SVG bar charts for the run pages, drawn when a report is built (never in the pipeline's hot path).

Plain SVG from templates (``templates/*.svg.j2``), no plotting library: every label is
escaped, so an event name or a reject reason carrying markup renders as text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime

from .templating import render

HOURLY_LIMIT = 72  # windows longer than three days are drawn per day
BAR = "#4c78a8"
REJECTED = "#e45756"


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
    values: list[int] | list[float | None] | list[int | None],
    title: str,
    unit: str = "events",
    width: int = 900,
    height: int = 260,
    colors: list[str] | None = None,
    peak: float | None = None,
    show_values: bool = False,
) -> str:
    """Vertical bars over time (labels thinned to about twelve along the axis); a ``None`` value draws no bar."""
    if not any(v is not None for v in values):
        return _empty(title, width)
    left, right, top, bottom = 56, 12, 40 if show_values else 28, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = peak or max(max(v for v in values if v is not None), 1)
    step = plot_w / len(values)
    every = max(1, len(values) // 12)
    grid = [
        {"y": f"{y:.1f}", "text_y": f"{y + 4:.1f}", "value": _k(peak * frac)}
        for frac in (0, 0.5, 1)
        for y in [top + plot_h * (1 - frac)]
    ]
    bars = []
    for i, (label, v) in enumerate(zip(labels, values)):
        h = plot_h * (v or 0) / peak
        x = left + i * step
        bars.append(
            {
                "label": label,
                "value": "no figure" if v is None else f"{v:,}",
                "color": (colors[i] if colors else None) or BAR,
                "x": f"{x + step * 0.1:.1f}",
                "y": f"{top + plot_h - h:.1f}",
                "width": f"{max(step * 0.8, 1):.1f}",
                "height": f"{h:.1f}",
                "center_x": f"{x + step / 2:.1f}",
                "tick_x": f"{x + step / 2:.1f}" if i % every == 0 else None,
                # the figure over its bar, while the bars are wide enough for it
                "value_y": f"{top + plot_h - h - 4:.1f}"
                if show_values and v is not None and step >= 36
                else None,
            }
        )
    return render(
        "column_chart.svg.j2",
        title=title,
        width=width,
        height=height,
        left=left,
        right=width - right,
        tick_y=height - bottom + 16,
        grid=grid,
        bars=bars,
        unit=unit,
    )


def runs_chart(
    labels: list[str],
    values: list[int | None] | list[float | None],
    title: str,
    unit: str,
    failed: list[bool],
    peak: float | None = None,
) -> str:
    """One bar per run, oldest first, a failed run's bar in red (the index's charts across runs)."""
    colors = [REJECTED if f else BAR for f in failed]
    return column_chart(
        labels, values, title, unit, width=560, height=220, colors=colors, peak=peak, show_values=True
    )


def bar_chart(items: Iterable[tuple[str, int]], title: str, width: int = 900, limit: int = 15) -> str:
    """Horizontal bars, largest first (reject reasons)."""
    rows = sorted(((str(k), int(v)) for k, v in items), key=lambda kv: (-kv[1], kv[0]))[:limit]
    if not rows:
        return _empty(title, width)
    label_w, row_h, top = 300, 22, 28
    peak = max(v for _, v in rows) or 1
    bar_w = width - label_w - 90
    bars = []
    for i, (label, v) in enumerate(rows):
        w = bar_w * v / peak
        bars.append(
            {
                "label": label,
                "shown": label if len(label) <= 44 else label[:43] + "…",
                "value": v,
                "y": top + i * row_h,
                "width": f"{max(w, 1):.1f}",
                "value_x": f"{label_w + w + 6:.1f}",
            }
        )
    return render(
        "bar_chart.svg.j2",
        title=title,
        width=width,
        height=top + row_h * len(rows) + 10,
        label_width=label_w,
        row_height=row_h,
        bars=bars,
        color=REJECTED,
    )


def _empty(title: str, width: int) -> str:
    return render("chart.svg.j2", title=title, width=width, height=44)


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
