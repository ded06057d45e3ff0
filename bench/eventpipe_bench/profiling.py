"""``--profile``: the slowest stage once more, run directly under cProfile; its top functions by cumulative
time, printed and kept in the results."""

from __future__ import annotations

import io
import pstats
from pathlib import Path
from typing import Any

from .common import STAGES, say
from .pg import truncate_pipeline_tables
from .pipeline import Target, run_direct


def read_profile(path: Path, stage: str, seconds: float, top: int = 10) -> tuple[str, list[dict[str, Any]]]:
    """The top functions by cumulative time, as printable text and as rows for the JSON."""
    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.sort_stats("cumulative").print_stats(top)
    text = buf.getvalue()
    start = text.find("   ncalls")
    text = (
        f"cProfile of {stage}, run directly in-process ({seconds:.2f}s under the profiler), "
        f"top {top} by cumulative time:\n" + (text[start:] if start >= 0 else text).rstrip()
    )
    rows = []
    for (file, line, fn), (_cc, nc, tt, ct, _) in sorted(stats.stats.items(), key=lambda kv: -kv[1][3])[:top]:
        rows.append(
            {
                "function": f"{Path(file).name}:{line}({fn})",
                "ncalls": nc,
                "tottime_s": round(tt, 3),
                "cumtime_s": round(ct, 3),
            }
        )
    return text, rows


def profile_slowest(
    t: Target, db_url: str, stage_lib_s: dict[str, float | None], direct_ran: bool, tmp: Path
) -> tuple[str, dict[str, Any]]:
    """The stage with the most work seconds, run alone and directly under cProfile. A later stage reads the
    files of the direct run before it (run first if there was none); load starts from emptied tables."""
    slowest = max(STAGES, key=lambda s: stage_lib_s[s] or 0)
    ptmp = tmp / ("direct-0" if direct_ran else "profile")
    if slowest != "extract" and not direct_ran:
        say("--profile needs the direct run's files for this stage: running it first")
        truncate_pipeline_tables(db_url)
        run_direct(t, ptmp)
    if slowest == "load":
        truncate_pipeline_tables(db_url)
    say(f"profiling {slowest} (directly, under cProfile)")
    prof_path = tmp / f"profile-{slowest}.pstats"
    pr = run_direct(t, ptmp, only=slowest, profile_out=prof_path)
    secs = pr.metrics["seconds"][slowest]
    text, rows = read_profile(prof_path, slowest, secs)
    return text, {"stage": slowest, "seconds_under_cprofile": secs, "top_cumulative": rows}
