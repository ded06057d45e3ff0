"""The printed report: one table (per stage, end to end, the limits) and the lines under it that say what
the figures mean and what else ran at the same time."""

from __future__ import annotations

import sys
from typing import Any

from .common import STAGES, median
from .goals import MIN_EVENTS, lines

COLUMNS = (
    ("", "left"),
    ("records", "right"),
    ("wall s", "right"),
    ("cpu s", "right"),
    ("work s", "right"),
    ("records/s", "right"),
    ("peak RSS MB", "right"),
    ("direct s", "right"),
    ("direct RSS MB", "right"),
    ("limit, same run", "left"),
    ("limit records/s", "right"),
    ("ratio", "right"),
)


def fmt_n(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def fmt_s(v: float | None) -> str:
    return "—" if v is None else f"{v:,.2f}"


def fmt_x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def _row(table: Any, *cells: str) -> None:
    """A row whose cells past the last one given are blank."""
    table.add_row(*cells, *[""] * (len(COLUMNS) - len(cells)))


def print_table(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=None if sys.stdout.isatty() else 180, highlight=False)
    st = res["stages"]
    r = res["ratios"]
    w = res["window"]
    m = res["machine"]
    reps = f"median of {res['repeat']}" if res["repeat"] > 1 else "1 run"
    table = Table(
        title=f"eventpipe benchmark: {res['events']:,} events, per_page {res['per_page']}, {reps} "
        f"(limits: median of {res['limit_repeat']}); {m['nproc']} cores, {m['cpu_model']}",
        title_justify="left",
    )
    for col, just in COLUMNS:
        table.add_column(col, justify=just)
    limits = {
        "extract": (
            "bare requests .json()",
            res["extract_limit_records_per_s"],
            r["extract_vs_bare_requests"],
        ),
        "transform_quality": ("—", None, None),
        "load": ("raw COPY (indexed)", res["load_limit_records_per_s"], r["load_vs_raw_copy"]),
    }
    for s in STAGES:
        x = st[s]
        name, lim, ratio = limits[s]
        _row(
            table,
            s,
            fmt_n(x["records"]),
            fmt_s(x["notebook_s"]),
            fmt_s(x["cpu_s"]),
            fmt_s(x["lib_s"]),
            fmt_n(x["records_per_s"]),
            fmt_n(x["peak_rss_mb"]),
            fmt_s(x["direct_s"]),
            fmt_n(x["direct_peak_rss_mb"]),
            name,
            fmt_n(lim),
            fmt_x(ratio),
        )
    table.add_section()
    _row(
        table,
        "end to end, papermill",
        fmt_n(res["events"]),
        fmt_s(res["end_to_end_s"]),
        fmt_s(res["end_to_end_cpu_s"]),
        "",
        fmt_n(res["end_to_end_records_per_s"]),
        fmt_n(res["peak_rss_mb"]),
        fmt_s(res["direct_end_to_end_s"]),
        fmt_n(res["direct_peak_rss_mb"]),
        "dlt (PERF-NOTES, not run)",
        fmt_n(res["dlt_reference_records_per_s"]),
        fmt_x(r["end_to_end_vs_dlt"]),
    )
    _row(
        table,
        "end to end, direct",
        fmt_n(res["events"]),
        fmt_s(res["direct_end_to_end_s"]),
        fmt_s(res["direct_cpu_s"]),
        "",
        fmt_n(res["direct_records_per_s"]),
        fmt_n(res["direct_peak_rss_mb"]),
    )
    _row(
        table,
        "notebook overhead",
        "",
        fmt_s(res["notebook_overhead_s"]),
        fmt_s(res["notebook_overhead_cpu_s"]),
    )
    if "dlt" in res:
        d = res["dlt"]
        _row(
            table,
            "dlt 1.31 (same run)",
            fmt_n(median([x["events"] for x in res["runs"]["dlt"]])),
            fmt_s(d["seconds"]),
            "",
            "",
            fmt_n(res["dlt_records_per_s"]),
            "",
            "",
            "",
            "failed: see the log" if d["error"] else "end to end, papermill ÷ this",
            "",
            fmt_x(r.get("end_to_end_vs_dlt_same_run")),
        )
    table.add_section()
    lim = res["runs"]["limits"]
    for label, n, s, rps in (
        (
            "requests .json()",
            median(lim["requests_json_n"]),
            lim["requests_json_s"],
            "extract_limit_records_per_s",
        ),
        (
            "requests orjson",
            median(lim["requests_orjson_n"]),
            lim["requests_orjson_s"],
            "extract_limit_orjson_records_per_s",
        ),
        ("raw COPY", res["copy_rows"], lim["copy_s"], "load_limit_records_per_s"),
    ):
        _row(table, f"limit: {label}", fmt_n(n), fmt_s(median(s)), "", "", fmt_n(res[rps]))
    con.print(table)
    slowest = max(STAGES, key=lambda s: st[s]["lib_s"] or 0)
    con.print(
        f"window [{w['since']}, {w['until']}) = {w['hours']} h × {w['events_per_hour']:,} events/h "
        f"(+ duplicates); demo API in its own process, warm-up {res['api_warmup_s']:.1f}s (not counted)"
    )
    con.print(
        "wall s: notebook (stage) or process (end to end) seconds; work s: the stage's own 'seconds' in "
        "metrics.json (load: plus its early_copy_s, the COPY that ran during the transform); records/s = records ÷ work s (end to end: events ÷ wall s); peak RSS: whole process "
        "tree (runner + kernel); direct: the same stage functions in one process, no notebooks"
    )
    pm_other = median([x["cpu"]["others_s"] for x in res["runs"]["papermill"]])
    d_other = median([x["cpu"]["others_s"] for x in res["runs"]["direct"]])
    con.print(
        f"cpu s: CPU seconds of the whole process tree (runner + kernel) during the stage or the run; "
        f"busy CPU of everything else on the machine (PostgreSQL included) during the runs: "
        f"papermill {fmt_s(pm_other)} s, direct {fmt_s(d_other)} s — on {m['nproc']} cores, a high figure "
        f"means the timings were contended"
    )
    if "dlt" in res and res["runs"]["dlt"]:
        x = res["runs"]["dlt"][0]
        con.print(
            f"dlt {x['dlt_version']} (rest_api, page-number paginator, per_page {res['dlt']['per_page']:,}, merge on "
            f"(user_id, timestamp, event)): wall s = pipeline.run only (extract, normalize, load; no interpreter "
            f"start or imports); {x['dropped']:,} items dropped by its key filter, {x['loaded']:,} rows in its "
            f"table (ours: {res['loaded']:,})"
        )
    if res.get("peak_pss_mb"):
        direct = res.get("direct_peak_pss_mb")
        con.print(
            f"peak PSS (shared pages split between the processes that map them): papermill "
            f"{fmt_n(res['peak_pss_mb'])} MB" + (f", direct {fmt_n(direct)} MB" if direct else "")
        )
    con.print(
        f"slowest stage: {slowest} ({fmt_s(st[slowest]['lib_s'])} s of work, "
        f"{fmt_s(st[slowest]['notebook_s'])} s as a notebook)"
    )
    if res.get("existing_rows"):
        e = res["existing_rows"]
        con.print(
            f"into a table of {e['rows_before']:,} other rows: load {fmt_s(e['load_s'])} s = "
            f"{fmt_n(e['load_records_per_s'])}/s, raw COPY {fmt_s(e['copy_s'])} s = "
            f"{fmt_n(e['copy_records_per_s'])}/s, ratio {fmt_x(e['load_vs_copy'])}; status "
            f"{e['status_s'] * 1000:.0f} ms, load summary {e['window_summary_s'] * 1000:.0f} ms, "
            f"`status` command {e['status_cli_wall_s']:.2f} s (Python's start included)"
        )
    if res["events"] < MIN_EVENTS:
        con.print(f"goals: not judged (they are set for 1M events; this run had {res['events']:,})")
    if res.get("goals"):
        met = sum(1 for v in res["goals"] if v["met"])
        measured = sum(1 for v in res["goals"] if v["met"] is not None)
        con.print(f"goals (bench/README.md, The goals): {met} of {measured} measured met")
        for line in lines(res["goals"]):
            con.print(line, markup=False)
