"""What the notebooks show a reviewer: bars of events per hour, samples of the parts, the tables after a load.

Drawn without a plotting library, so no run pays for importing one.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ..jsonio import dumps, loads
from ..rundir import CLEAN_SCHEMA, REJECT_SCHEMA, head
from ..storage.store import Store
from .stages import StageContext


@dataclass
class Bars:
    """A bar chart as a table: HTML bars in JupyterLab and the saved report, text bars in logs."""

    counts: pd.Series  # label -> count, in display order
    label: str
    value: str = "clean events"
    width: int = 40  # text bars: characters for the largest count

    @property
    def _top(self) -> int:
        return max(int(self.counts.max()), 1) if len(self.counts) else 1

    def _repr_html_(self) -> str:
        rows = "".join(
            f'<tr><td style="text-align:left">{html.escape(str(k))}</td><td>{int(v):,}</td>'
            f'<td style="width:24em;text-align:left"><div style="background:#5b8def;height:0.8em;'
            f'width:{100 * int(v) / self._top:.1f}%"></div></td></tr>'
            for k, v in self.counts.items()
        )
        return (
            f"<table><thead><tr><th>{html.escape(self.label)}</th><th>{html.escape(self.value)}</th><th></th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )

    def __repr__(self) -> str:
        lines = [f"{self.label:<16} {self.value:>12}"]
        lines += [
            f"{str(k):<16} {int(v):>12,} {'█' * round(self.width * int(v) / self._top)}"
            for k, v in self.counts.items()
        ]
        return "\n".join(lines)


def per_hour_chart(per_hour: pd.Series, max_rows: int = 48) -> Bars:
    """Clean events per hour (per day beyond ``max_rows`` hours) as bars."""
    s = per_hour.sort_index()
    hourly = len(s) <= max_rows
    if not hourly:
        s = s.groupby(s.index.floor("D")).sum()
    s.index = s.index.strftime("%Y-%m-%d %H:%M" if hourly else "%Y-%m-%d")
    return Bars(s, "hour (UTC)" if hourly else "day (UTC)")


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


def table_summary(ctx: StageContext) -> pd.DataFrame:
    """Row counts a reviewer checks after a load: the window in ``analytics`` and the dead letters."""
    store = Store(ctx.settings)
    try:
        s = store.window_summary(ctx.since, ctx.until)
    finally:
        store.dispose()
    rows = {
        "analytics rows in this window": s["in_window"],
        "analytics rows in total": s["total"],
        **{f"dead letters {k}": v for k, v in sorted(s["dead_letters"].items())},
        "incremental watermark": str(s["watermark"]) if s["watermark"] else "(none yet)",
        "database": store.masked_url,
    }
    return pd.Series(rows, name="value", dtype=object).to_frame()
