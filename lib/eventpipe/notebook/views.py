"""What the notebooks show a reviewer: SVG charts, samples of the parts, the tables after a load.

Charts are plain SVG (``audit.charts``): no run pays for importing a plotting library.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from ..audit.charts import Chart, bar_chart, events_chart
from ..audit.charts import reasons_chart as chart_of_reasons
from ..jsonio import dumps, loads
from ..rundir import CLEAN_SCHEMA, REJECT_SCHEMA, head
from ..settings import iso
from ..storage.store import Store
from .stages import StageContext


def per_hour_chart(per_hour: pd.Series) -> Chart:
    """Clean events per hour (per day for windows over three days) as an SVG chart."""
    return events_chart({iso(t.to_pydatetime()): int(n) for t, n in per_hour.items()})


def reasons_chart(reasons: Counter) -> Chart:
    """Reject reasons, most frequent first, as an SVG chart."""
    return chart_of_reasons(dict(reasons))


def reasons_table(reasons: Counter) -> pd.DataFrame:
    """Reject reasons, most frequent first."""
    return pd.DataFrame(reasons.most_common(), columns=["reason", "records"]).set_index("reason")


def faults_table(faults: dict[str, int]) -> Any:
    """Faults by kind, or one line saying there were none (an empty table is just a bare header)."""
    if not faults:
        from IPython.display import Markdown

        return Markdown("*No faults: every page answered on its first attempt.*")
    return (
        pd.Series(faults, name="attempts", dtype="int64")
        .rename_axis("fault")
        .sort_values(ascending=False)
        .to_frame()
    )


def attempts_chart(metrics: dict[str, Any]) -> Chart:
    """What the API did with the extract's requests: pages answered, retries, and each kind of fault."""
    rows = {"pages answered": metrics.get("pages", 0), "retries": metrics.get("retries", 0)}
    rows.update({f"fault: {k}": v for k, v in (metrics.get("faults") or {}).items()})
    return Chart(
        bar_chart(rows.items(), f"API requests ({metrics.get('attempts', 0):,} attempts)"),
        ", ".join(f"{k} {v:,}" for k, v in rows.items()),
    )


def load_chart(metrics: dict[str, Any]) -> Chart:
    """What the load did with each passed row: inserted, updated, or left unchanged."""
    rows = {k: metrics.get(k) or 0 for k in ("inserted", "updated", "unchanged")}
    return Chart(
        bar_chart(rows.items(), "rows by outcome of the upsert"),
        ", ".join(f"{k} {v:,}" for k, v in rows.items()),
    )


def raw_sample(ctx: StageContext, n: int = 8) -> pd.DataFrame:
    """The first raw items of the window, exactly as the API sent them (only the first pages are read)."""
    seqs: list[int] = []
    raws: list[str] = []
    for batch in head(ctx.run.parts("raw"), 1):
        for first, body in zip(batch["first_seq"].to_pylist(), batch["body"].to_pylist()):
            items = loads(body)[: n - len(raws)]
            seqs += range(first, first + len(items))
            raws += [dumps(x) for x in items]
        if len(raws) >= n:
            break
    return pd.DataFrame({"seq": seqs, "raw": raws})


def _sample(parts: list[Path], n: int, columns: list[str]) -> pd.DataFrame:
    rows = 0
    batches = []
    for batch in head(parts, n):
        batches.append(batch.slice(0, n - rows))
        rows += batches[-1].num_rows
        if rows >= n:
            break
    return pa.Table.from_batches(batches).to_pandas() if rows else pd.DataFrame(columns=columns)


def clean_sample(ctx: StageContext, n: int = 10) -> pd.DataFrame:
    return _sample(ctx.run.parts("clean"), n, CLEAN_SCHEMA.names)


def reject_sample(ctx: StageContext, n: int = 10) -> pd.DataFrame:
    return _sample(ctx.run.parts("rejects"), n, REJECT_SCHEMA.names)


def table_summary(ctx: StageContext, advance_watermark: bool = False) -> pd.DataFrame:
    """What a reviewer checks after a load: this window's rows, the whole table, dead letters, the watermark
    (and whether this run moved it or another run set it)."""
    store = Store(ctx.settings)
    try:
        s = store.window_summary(ctx.since, ctx.until)
    finally:
        store.dispose()
    mark = s["watermark"]
    if mark is None:
        watermark = "(none yet: no incremental run has succeeded)"
    elif advance_watermark and s["watermark_run_id"] == ctx.run_id:
        watermark = f"{iso(mark)} (moved to the end of this run's window)"
    else:
        watermark = f"{iso(mark)} (set by run {s['watermark_run_id']}; this run does not move it)"
    table = store.t.analytics.name  # the pipeline's own
    rows = {
        f"{table} rows in this run's window [{iso(ctx.since)}, {iso(ctx.until)})": s["in_window"],
        f"{table} rows in total, all windows (inserted by successful runs)": s["total"],
        **{f"dead letters {k}": v for k, v in sorted(s["dead_letters"].items())},
        "incremental watermark": watermark,
        "database": store.masked_url,
    }
    return pd.Series(rows, name="value", dtype=object).to_frame()
