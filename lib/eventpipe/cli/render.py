"""What the command line prints: run outcomes, status, backfill partitions, replay dry runs (rich tables).

User-visible text from runs and the API is escaped before rich sees it, so markup-like text such as
``[cell error]`` prints as it is.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..core.counts import RunCounts
from ..orchestration.backfill import PartitionResult
from ..orchestration.replay import DryRun
from ..orchestration.runner import RunOutcome
from ..orchestration.source_check import SourceCheck
from ..settings import iso


def console() -> Console:
    return Console(stderr=False, highlight=False)


def n(v: Any) -> str:
    return "-" if v is None else f"{v:,}"


def secs(v: Any) -> str:
    return "-" if v is None else f"{v:.2f}"


def outcome(o: RunOutcome) -> None:
    m = o.metrics
    c = m.get("counts", {})
    st = m.get("stage_seconds", {})
    table = Table(title=escape(f"run {o.run_id} ({m['kind']}): {o.status}"))
    for col in ("stage", "records in", "records out", "rejected", "duplicates", "seconds"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    table.add_row("extract", "-", n(c.get("extracted")), "-", "-", secs(st.get("extract")))
    table.add_row(
        "transform",
        n(c.get("extracted")),
        n(c.get("transformed")),
        n(c.get("rejected_transform")),
        n(c.get("duplicates")),
        secs(st.get("transform_quality")),
    )
    table.add_row(
        "quality", n(c.get("transformed")), n(c.get("passed")), n(c.get("rejected_quality")), "-", ""
    )
    table.add_row("load", n(c.get("passed")), n(c.get("loaded")), "-", "-", secs(st.get("load")))
    con = console()
    con.print(table)
    rate = m.get("pass_rate")
    con.print(escape(f"window  [{m['window']['since']}, {m['window']['until']})"))
    con.print(
        f"loaded  {n(c.get('loaded'))} (inserted {n(c.get('inserted'))}, updated {n(c.get('updated'))}, "
        f"unchanged {n(c.get('unchanged'))}); dead letters new {n(c.get('dead_letters_new'))}, "
        f"seen again {n(c.get('dead_letters_seen'))}"
    )
    con.print(f"pass rate {rate:.2%}" if rate is not None else "pass rate -")
    con.print(escape(f"duration {m['duration_s']:.1f}s   report folder: {o.report_dir}"))
    if o.error:
        con.print(f"[red]FAILED[/red] {escape(str(o.error))}")


def status(data: dict[str, Any]) -> None:
    con = console()
    table = Table(title=escape(f"last runs ({data['database']})"))
    for col in (
        "run_id",
        "kind",
        "status",
        "window",
        "extracted",
        "loaded",
        "rejected",
        "pass rate",
        "seconds",
        "error",
    ):
        table.add_column(col)
    for r in data["runs"]:
        rejected = RunCounts.from_mapping(r).rejected if r["extracted"] is not None else None
        error = (r.get("failure_class") or "") + (": " + r["error"][:60] if r.get("error") else "")
        table.add_row(
            escape(r["run_id"]),
            r["kind"],
            r["status"],
            f"{r['window_since']} → {r['window_until']}",
            n(r["extracted"]),
            n(r["loaded"]),
            n(rejected),
            f"{r['pass_rate']:.2%}" if r["pass_rate"] is not None else "-",
            secs(r["duration_s"]),
            escape(error),
        )
    con.print(table)
    con.print(f"watermark: {data['watermark'] or '(none yet)'}")
    dl = data["dead_letters"]
    con.print(
        f"dead letters pending: {dl['pending']} (replayed {dl['replayed']}, discarded {dl['discarded']})"
    )
    for stage, reasons in dl["pending_by_stage_reason"].items():
        con.print(escape(f"  {stage}: " + ", ".join(f"{k} {v}" for k, v in reasons.items())))


def partitions(results: list[PartitionResult]) -> None:
    table = Table(title="backfill partitions")
    for col in ("partition", "result", "run_id", "extracted", "loaded", "rejected", "error"):
        table.add_column(col)
    for r in results:
        table.add_row(
            f"{iso(r.since)} → {iso(r.until)}",
            r.result,
            escape(r.run_id or "-"),
            n(r.extracted),
            n(r.loaded),
            n(r.rejected),
            escape((r.error or "")[:80]),
        )
    console().print(table)


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
    """What ``source check`` found on the first page."""
    out = console()
    out.print(f"source: {escape(c.url)}")
    out.print(f"paginator {c.paginator}, format {c.format}, records at {escape(repr(c.records_path))}")
    out.print(f"window [{c.window[0]}, {c.window[1]}) sent as {escape(str(c.sent))}")
    out.print(f"first page: {c.total} records; the first {len(c.raw)}:")
    table = Table("#", "as sent", "after the field map", "record rules")
    for i, (raw, mapped, verdict) in enumerate(zip(c.raw, c.mapped, c.verdicts), 1):
        table.add_row(str(i), escape(_cut(raw)), escape(_cut(mapped)), escape(verdict))
    out.print(table)


def _cut(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
