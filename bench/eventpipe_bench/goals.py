"""The performance goals, judged on one benchmark run's results: each figure beside its goal, met or not.

The goals are the ones the project set itself for the whole pipeline at 1M events (bench/README.md,
*The goals*). A goal whose figure this run did not measure (no ``--dlt``, no ``--existing-rows``, no direct
run, no ``--rss-against``) is listed as not measured, never as met."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MIN_EVENTS = 900_000  # the goals are set for about 1M events (the bench's 1M window serves 1,000,167)
RSS_LIMIT_MB = 1024.0
RSS_GROWTH = 0.10  # at 5M events: at most this much over the same code's peak at 1M


@dataclass(frozen=True)
class Goal:
    key: str
    text: str  # the goal as the table prints it
    figure: Callable[[dict[str, Any]], float | None]
    met: Callable[[float], bool]
    unit: str  # how the figure prints: "/s", "x", "s", "MB", "%"
    every_run: bool = False  # an upper bound for every run: over several runs, judged on the largest figure


def _ratio(name: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda res: (res.get("ratios") or {}).get(name)


def _worst_overhead(res: dict[str, Any]) -> float | None:
    runs = res.get("notebook_overhead_runs_s") or []
    return max(runs) if runs else None


def _rss_growth(res: dict[str, Any]) -> float | None:
    base = res.get("rss_against_mb")
    if not base or res.get("peak_rss_mb") is None:
        return None
    return (res["peak_rss_mb"] - base) / base * 100.0


GOALS = (
    Goal(
        "transform_records_per_s",
        "≥ 400,000/s on 2 cores",
        lambda r: r.get("transform_records_per_s"),
        lambda v: v >= 400_000,
        "/s",
    ),
    Goal(
        "end_to_end_vs_limit_sum",
        "≤ 1.6× the bare fetch + raw COPY",
        _ratio("end_to_end_vs_limit_sum"),
        lambda v: v <= 1.6,
        "x",
    ),
    Goal(
        "end_to_end_vs_dlt_same_run",
        "≥ 6× dlt 1.31, same run",
        _ratio("end_to_end_vs_dlt_same_run"),
        lambda v: v >= 6.0,
        "x",
    ),
    Goal(
        "notebook_overhead_s",
        "≤ 1.5 s median",
        lambda r: r.get("notebook_overhead_s"),
        lambda v: v <= 1.5,
        "s",
    ),
    Goal(
        "notebook_overhead_worst_s",
        "≤ 2.5 s in every run",
        _worst_overhead,
        lambda v: v <= 2.5,
        "s",
        every_run=True,
    ),
    Goal(
        "peak_rss_mb",
        f"< {RSS_LIMIT_MB:,.0f} MB, whole tree",
        lambda r: r.get("peak_rss_mb"),
        lambda v: v < RSS_LIMIT_MB,
        "MB",
    ),
    Goal(
        "peak_rss_growth_pct",
        f"≤ +{RSS_GROWTH:.0%} over --rss-against",
        _rss_growth,
        lambda v: v <= RSS_GROWTH * 100.0,
        "%",
    ),
    Goal(
        "load_vs_copy_existing_rows",
        "≥ 0.8× raw COPY into the filled table",
        _ratio("load_vs_copy_existing_rows"),
        lambda v: v >= 0.8,
        "x",
    ),
)


def judge(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Per goal: its figure in this run (None when not measured) and whether it met the goal (None then).
    A run of fewer than ``MIN_EVENTS`` events is not judged (an empty list): its fixed costs would decide."""
    if res.get("events", MIN_EVENTS) < MIN_EVENTS:
        return []
    out = []
    for g in GOALS:
        v = g.figure(res)
        out.append({"goal": g.key, "text": g.text, "value": v, "met": None if v is None else g.met(v)})
    return out


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "not measured"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "x":
        return f"{value:.2f}×"
    if unit == "%":
        return f"{value:+.1f} %"
    if unit == "MB":
        return f"{value:,.0f} MB"
    return f"{value:.2f} s"


_UNITS = {g.key: g.unit for g in GOALS}
_WORD = {True: "met", False: "NOT MET", None: "—"}


def _line(v: dict[str, Any], how: str = "") -> str:
    """One goal's verdict: its key, the figure judged, the goal and the word."""
    figure = fmt(v["value"], _UNITS[v["goal"]])
    return f"  {v['goal']:<28} {how}{figure:>14}   goal {v['text']}: {_WORD[v['met']]}"


def lines(verdicts: list[dict[str, Any]]) -> list[str]:
    """The printed verdicts, one line a goal."""
    return [_line(v) for v in verdicts]


def judge_runs(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per goal over several runs of the same command: each run's figure, their median over the runs that
    measured it (for a goal of every run, the worst of them) and whether that met the goal; ``met_in`` counts
    the runs that met it alone."""
    out = []
    for g in GOALS:
        values = [g.figure(r) for r in results]
        measured = sorted(v for v in values if v is not None)
        worst = max if g.every_run else statistics.median
        med = worst(measured) if measured else None
        out.append(
            {
                "goal": g.key,
                "text": g.text,
                "values": values,
                "value": med,
                "met": None if med is None else g.met(med),
                "met_in": sum(1 for v in measured if g.met(v)),
                "measured_in": len(measured),
            }
        )
    return out


def runs_lines(verdicts: list[dict[str, Any]]) -> list[str]:
    """The printed verdicts over several runs, one line a goal."""
    every = {g.key: g.every_run for g in GOALS}
    out = []
    for v in verdicts:
        line = _line(v, f"{'worst' if every[v['goal']] else 'median':>6} ")
        if v["measured_in"]:
            each = ", ".join(fmt(x, _UNITS[v["goal"]]) if x is not None else "—" for x in v["values"])
            line += f" (met in {v['met_in']} of {v['measured_in']} runs: {each})"
        out.append(line)
    return out


def read_results(path: str) -> dict[str, Any]:
    """A results file of ``bench/run.py``, or ValueError with one line that says what is wrong with it."""
    import json
    from pathlib import Path

    try:
        res = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read results file {path}: {e}") from None
    if not isinstance(res, dict) or not isinstance(res.get("events"), int):
        raise ValueError(f"{path} is not a results file of bench/run.py (no event count in it)")
    if res["events"] < MIN_EVENTS:
        raise ValueError(
            f"{path} is a run of fewer than {MIN_EVENTS:,} events; the goals are set for 1M events"
        )
    return res


def judge_files(paths: list[str]) -> int:
    """``bench/run.py --judge FILE...``: the goals over several results files of the same command; exit 1
    when a goal that was measured is not met by the median."""
    try:
        results = [read_results(p) for p in paths]
    except ValueError as e:
        print(f"bench: {e}")
        return 2
    verdicts = judge_runs(results)
    commits = sorted({str((r.get("machine") or {}).get("git_commit")) for r in results})
    print(
        f"goals over {len(results)} runs (commits {', '.join(commits)}): medians across the runs, a goal of"
    )
    print("every run on its worst run")
    for line in runs_lines(verdicts):
        print(line)
    return 1 if any(v["met"] is False for v in verdicts) else 0
