"""What the command line prints: run outcomes, status, backfill partitions, replay dry runs (rich tables),
the parameter list.

User-visible text from runs and the API is escaped before rich sees it, so markup-like text such as
``[cell error]`` prints as it is.
"""

from __future__ import annotations

import json
import textwrap
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..core.counts import RunCounts
from ..jsonio import dumps
from ..settings import iso, parse_instant
from ..storage.runs import AUDIT_INCOMPLETE
from ..words import counted

if (
    TYPE_CHECKING
):  # printed here, made elsewhere: a run's summary must not import replay's and check's modules
    from ..orchestration.backfill import PartitionResult
    from ..orchestration.replay import DryRun
    from ..orchestration.runner import RunOutcome
    from ..orchestration.source_check import SourceCheck


def console() -> Console:
    return Console(stderr=False, highlight=False)


def n(v: Any) -> str:
    return "-" if v is None else f"{v:,}"


def k(v: Any) -> str:
    """A count in few characters: 950, 20.6k, 1.2M."""
    if v is None:
        return "-"
    if abs(v) < 1000:
        return str(v)
    if abs(v) < 1_000_000:
        return f"{v / 1000:.1f}k" if abs(v) < 100_000 else f"{v / 1000:.0f}k"
    return f"{v / 1_000_000:.1f}M"


def short_id(run_id: str | None) -> str:
    """The unique tail of a run id (``20261202T061332-incremental-8bd636`` -> ``8bd636``);
    ``status --run`` takes it as well as the full id."""
    return "-" if not run_id else run_id.rsplit("-", 1)[-1]


def short_window(since: Any, until: Any) -> str:
    """``11-25 00:53 → 12-02 00:53`` (UTC; the year is shown when the window crosses one)."""
    if not since or not until:
        return "-"
    a, b = (parse_instant(x) if isinstance(x, str) else x for x in (since, until))
    fmt = "%m-%d %H:%M" if a.year == b.year else "%Y-%m-%d %H:%M"
    return f"{a:{fmt}} → {b:{fmt}}"


def pct(v: Any) -> str:
    return "-" if v is None else f"{v:.1%}"


def _compact_table(
    title: str | None = None, text: tuple[str, ...] = (), numbers: tuple[str, ...] = ()
) -> Table:
    """A table without a box; ``text`` columns (left-aligned), then ``numbers`` (right-aligned), never wrapped."""
    # no box: its edges and dividers cost a column each, and these tables must fit 80 columns
    table = Table(
        title=title,
        box=None,
        pad_edge=False,
        padding=(0, 1, 0, 1),
        title_justify="left",
        header_style="bold underline",
    )
    for col in text:
        table.add_column(col, justify="left", no_wrap=True)
    for col in numbers:
        table.add_column(col, justify="right", no_wrap=True)
    return table


SHORT_KIND = {"incremental": "incr"}
SHORT_STATUS = {"succeeded": "ok"}


def secs(v: Any) -> str:
    return "-" if v is None else f"{v:.2f}"


def outcome(o: RunOutcome) -> None:
    """The end-of-run summary, readable at 80 columns (``status --run`` has every field)."""
    m = o.metrics
    c = m.known_counts()
    st = m.stage_seconds
    table = _compact_table(escape(f"run {short_id(o.run_id)} ({m.kind}): {o.status}"))
    for col in ("stage", "in", "out", "rejected", "duplicates", "seconds"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    table.add_row("extract", "-", k(c.get("extracted")), "-", "-", secs(st.get("extract")))
    table.add_row(
        "transform",
        k(c.get("extracted")),
        k(c.get("transformed")),
        k(c.get("rejected_transform")),
        k(c.get("duplicates")),
        secs(st.get("transform_quality")),
    )
    table.add_row(
        "quality", k(c.get("transformed")), k(c.get("passed")), k(c.get("rejected_quality")), "-", ""
    )
    table.add_row("load", k(c.get("passed")), k(c.get("loaded")), "-", "-", secs(st.get("load")))
    con = console()
    con.print(table)
    con.print(f"window    {short_window(m.since, m.until)} UTC")
    con.print(
        f"loaded    {k(c.get('loaded'))}: inserted {k(c.get('inserted'))}, updated {k(c.get('updated'))}, "
        f"unchanged {k(c.get('unchanged'))}"
    )
    con.print(f"dead      new {k(c.get('dead_letters_new'))}, seen again {k(c.get('dead_letters_seen'))}")
    con.print(f"pass rate {pct(m.pass_rate)}   duration {m.duration_s:.1f}s   run {escape(o.run_id)}")
    con.print(escape(f"report    {o.report_dir}"), soft_wrap=True)
    if o.error:
        con.print(f"[red]FAILED[/red] {escape(str(o.error))}", soft_wrap=False)


def status(data: dict[str, Any]) -> None:
    """Last runs at 80 columns: compact id, window and counts; errors listed below the table."""
    con = console()
    table = _compact_table(
        escape(f"last runs, times UTC ({data['database']})"),
        text=("run", "kind", "status", "window"),
        numbers=("read", "load", "rej", "pass"),
    )
    failures = []
    for r in data["runs"]:
        rejected = RunCounts.from_mapping(r).rejected if r["extracted"] is not None else None
        table.add_row(
            short_id(r["run_id"]),
            SHORT_KIND.get(r["kind"], r["kind"]),
            SHORT_STATUS.get(r["status"], r["status"])
            + ("*" if r.get("failure_class") == AUDIT_INCOMPLETE else ""),
            short_window(r["window_since"], r["window_until"]),
            k(r["extracted"]),
            k(r["loaded"]),
            k(rejected),
            pct(r["pass_rate"]),
        )
        if r.get("error"):
            failures.append(f"{short_id(r['run_id'])} {r.get('failure_class') or 'failed'}: {r['error']}")
    con.print(table)
    for line in failures:
        con.print(escape(_clip(line)))
    con.print(f"watermark: {data['watermark'] or '(none yet)'}")
    late = lateness_line(data["runs"])
    if late:
        con.print(escape(late))
    dl = data["dead_letters"]
    con.print(
        f"dead letters pending: {dl['pending']} (replayed {dl['replayed']}, discarded {dl['discarded']})"
    )
    for stage, reasons in dl["pending_by_stage_reason"].items():
        con.print(escape(_clip(f"  {stage}: " + ", ".join(f"{k} {v}" for k, v in reasons.items()))))
    con.print("full detail: status --json, status --run RUN", style="dim")


def lateness_line(runs: list[dict[str, Any]]) -> str | None:
    """``late rows: 7 in the last 10 runs; newest lag p50 3m, p99 14m, max 15m``: the runs' late rows (their
    ``lateness``) and the lag figures of the newest run that measured any; None when none measured."""
    measured = [r["lateness"] for r in runs if r.get("lateness")]
    if not measured:
        return None
    line = f"late rows: {sum(m.get('late_rows', 0) for m in measured)} in the last {len(runs)} runs"
    lagged = next((m for m in measured if m.get("lag_rows")), None)
    if lagged:
        p50, p99, top = (_lag(lagged.get(k)) for k in ("lag_p50_s", "lag_p99_s", "lag_max_s"))
        line += f"; newest lag p50 {p50}, p99 {p99}, max {top}"
    return line


def _lag(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            rest = s - (s // size) * size
            sub = {"d": ("h", 3600), "h": ("m", 60), "m": ("s", 1)}[unit]
            return f"{s // size}{unit}" + (f"{rest // sub[1]}{sub[0]}" if rest // sub[1] else "")
    return f"{s}s"


def pipelines(entries: list[dict[str, Any]], shown: str | None) -> None:
    """A line per pipeline at 80 columns: its last run, watermark, pending dead letters, health; then the
    name of the pipeline whose runs ``status`` shows below (None: none, how to see one's)."""
    table = _compact_table(
        "pipelines, times UTC",
        text=("pipeline", "last run", "status", "finished", "watermark"),
        numbers=("dead",),
    )
    table.add_column("health", justify="left", no_wrap=True)
    for p in entries:
        last = p["last_run"] or {}
        table.add_row(
            escape(p["pipeline"]),
            short_id(last.get("run_id")),
            SHORT_STATUS.get(last.get("status") or "-", last.get("status") or "-"),
            _short_time(last.get("finished_at")),
            _short_time(p["watermark"]),
            k(p["dead_letters_pending"]),
            p["health"],
        )
    con = console()
    con.print(table)
    if shown is None:
        con.print("one pipeline's runs and dead letters: status --pipeline NAME", style="dim")
    else:
        con.print(escape(f"pipeline {shown}:"))


def _short_time(value: str | None) -> str:
    return parse_instant(value).strftime("%m-%d %H:%M") if value else "-"


def _clip(text: str, width: int = 79) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def partitions(results: list[PartitionResult]) -> None:
    """The backfill's partitions at 80 columns; errors listed below the table."""
    table = _compact_table(
        "backfill partitions",
        text=("partition (UTC)", "result", "run"),
        numbers=("extracted", "loaded", "rejected"),
    )
    failures = []
    for r in results:
        table.add_row(
            short_window(r.since, r.until),
            r.result,
            short_id(r.run_id),
            k(r.extracted),
            k(r.loaded),
            k(r.rejected),
        )
        if r.error and r.result == "failed":
            failures.append(f"{short_window(r.since, r.until)}: {r.error}")
    con = console()
    con.print(table)
    for line in failures:  # whole, wrapped at the console's width: the runner's log line of it is not shown
        con.print(escape(line))


def dry_run(d: DryRun) -> None:
    con = console()
    if not d.pending:
        con.print("no pending dead letters")
        return
    con.print(
        f"dry run: {d.would_pass} of {d.pending} pending dead letters would pass now "
        f"({d.superseded} superseded duplicates); nothing was written"
    )
    for reason, count in d.still_failing.items():
        con.print(escape(f"  still failing: {reason} {count}"))


def source_check(c: SourceCheck) -> None:
    """What ``source check`` found: the window and why, the verdicts of every record read, one record as
    key -> value lines before and after the field map (cut to the terminal's width, never to each other)."""
    out = console()
    out.print(f"source: {escape(c.url)}")
    out.print(f"paginator {c.paginator}, format {c.format}, records at {escape(repr(c.records_path))}")
    out.print(f"window [{iso(c.window.since)}, {iso(c.window.until)})")
    out.print(f"  {escape(c.window.why)}")
    out.print(f"sent as {escape(str(c.sent))}")
    out.print(f"read {counted(c.pages, 'page')}: {counted(c.total, 'record')}")
    reasons = ", ".join(f"{name} {count}" for name, count in c.reasons.items())
    for label, count, more in (
        ("would load", c.would_load, ""),
        ("dead letter", c.dead_letters, f"  ({reasons})" if reasons else ""),
        ("outside the window", c.outside, ""),
    ):
        out.print(escape(_cut(f"  {label:<19}{count:>7}{more}", out.width)))
    if c.total == 0:
        return
    for title, record in (("the first record, as sent:", c.record), ("after the field map:", c.mapped)):
        out.print(title)
        for line in _key_values(record, out.width):
            out.print(escape(line))
    out.print(escape(_cut(f"record rules: {c.fate}", out.width)))


def _key_values(record: Any, width: int, most: int = 24) -> list[str]:
    """A record as ``key  value`` lines, nested objects as dotted keys, each line cut to ``width``."""
    flat = list(_flatten(record)) if isinstance(record, dict) else [("(record)", record)]
    if not flat:
        return ["  (an empty object)"]
    key_width = min(max(len(k) for k, _ in flat[:most]), width // 3)
    lines = [_cut(f"  {_cut(k, key_width):<{key_width}}  {dumps(v)}", width) for k, v in flat[:most]]
    if len(flat) > most:
        lines.append(f"  … {len(flat) - most} more keys")
    return lines


def _flatten(obj: dict, prefix: str = "") -> Any:
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def _cut(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def param_lines(
    known: dict[str, tuple[str, Any, str]], width: int = 80, header: str = "default"
) -> list[str]:
    """``params``: per parameter a line of key, type and default (or a pipeline's value: ``header``), then its
    meaning indented below it, every line wrapped at ``width`` between words (a long default continues under
    the default column)."""
    key_width = max(len(key) for key in known)
    type_width = max(len(t) for t, _, _ in known.values())
    out = [f"{'key':<{key_width}}  {'type':<{type_width}}  {header}", "    meaning"]
    for key, (type_name, default, meaning) in known.items():
        head = f"{key:<{key_width}}  {type_name:<{type_width}}  {json.dumps(default)}"
        out += _wrap(head, width, " " * (key_width + type_width + 4))
        out += _wrap("    " + meaning, width, "    ")
    return out


def _wrap(text: str, width: int, indent: str) -> list[str]:
    # never inside a word or at a hyphen: a key, a path or a JSON value stays whole even if it overflows
    return textwrap.wrap(
        text, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    ) or [text]
