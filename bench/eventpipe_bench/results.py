"""The results JSON: medians of the runs per stage and end to end, the limits and the ratios to them, every
single measurement (``runs``), the window and the machine; the optional parts are added by their own step."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from .common import STAGES, median, rate, work_s
from .pipeline import PipelineRun

DLT_RECORDS_PER_S = (
    13_000  # PERF-NOTES.md: dlt 1.31 rest_api + merge, 68-77 s per 1M (13-15k/s); not re-measured
)


def _med(runs: list[PipelineRun], get: Callable[[PipelineRun], Any]) -> float | None:
    """The median of one figure over the runs (None when there were none)."""
    return median([get(r) for r in runs])


def _run_record(r: PipelineRun, stage_seconds: dict[str, float]) -> dict[str, Any]:
    """One run's own measurements, as ``runs.papermill`` and ``runs.direct`` hold them."""
    return {
        "wall_s": r.wall_s,
        "cpu": r.cpu.as_dict(),
        "stage_cpu_s": r.stage_cpu_s,
        "peak_rss_mb": r.peak_rss_mb,
        "peak_pss_mb": r.peak_pss_mb,
        "peak_breakdown_mb": r.peak_breakdown_mb,
        "stage_peak_rss_mb": r.stage_peak_rss_mb,
        "stage_seconds": stage_seconds,
    }


def _stage(n: int, pm_runs: list[PipelineRun], direct_runs: list[PipelineRun], s: str) -> dict[str, Any]:
    lib_s = _med(pm_runs, lambda r: work_s(r.metrics["stages"][s]))
    nb_s = _med(pm_runs, lambda r: r.metrics["stage_seconds"][s])
    direct_s = _med(direct_runs, lambda r: r.metrics["seconds"].get(s))
    return {
        "records": n,
        "notebook_s": nb_s,
        "lib_s": lib_s,
        "direct_s": direct_s,
        "records_per_s": rate(n, lib_s),
        "records_per_s_notebook": rate(n, nb_s),
        "records_per_s_direct": rate(n, direct_s),
        "cpu_s": _med(pm_runs, lambda r: r.stage_cpu_s.get(s)),
        "direct_cpu_s": _med(direct_runs, lambda r: r.stage_cpu_s.get(s)),
        "peak_rss_mb": _med(pm_runs, lambda r: r.stage_peak_rss_mb.get(s)),
        "direct_peak_rss_mb": _med(direct_runs, lambda r: r.stage_peak_rss_mb.get(s)),
        # inside the kernel against outside: the stage's own seconds, and its notebook's, ÷ direct
        "kernel_vs_direct": (lib_s / direct_s) if lib_s and direct_s else None,
        "notebook_vs_direct": (nb_s / direct_s) if nb_s and direct_s else None,
    }


def summarise(
    args: argparse.Namespace,
    info: dict[str, Any],
    window: dict[str, Any],
    pm_runs: list[PipelineRun],
    direct_runs: list[PipelineRun],
    limits: dict[str, list[float]],
    copy_rows: int,
    warmup_s: float,
) -> dict[str, Any]:
    first = pm_runs[0].metrics
    events = first["counts"]["extracted"]
    loaded = first["counts"]["loaded"]
    stage_records = {"extract": events, "transform_quality": events, "load": loaded}
    stages_out = {s: _stage(stage_records[s], pm_runs, direct_runs, s) for s in STAGES}
    e2e_s = _med(pm_runs, lambda r: r.wall_s)
    direct_s = _med(direct_runs, lambda r: r.wall_s)
    pm_cpu_s, direct_cpu_s = _med(pm_runs, lambda r: r.cpu.tree_s), _med(direct_runs, lambda r: r.cpu.tree_s)
    req_json = median([n / s for n, s in zip(limits["requests_json_n"], limits["requests_json_s"])])
    req_orjson = median([n / s for n, s in zip(limits["requests_orjson_n"], limits["requests_orjson_s"])])
    copy_rps = median([copy_rows / s for s in limits["copy_s"]])
    e2e_rps = rate(events, e2e_s)
    # the machine's limit for the whole run: the bare fetch of the same pages plus the raw COPY of its rows
    limit_sum_s = median(limits["requests_json_s"]) + median(limits["copy_s"])
    return {
        "events": events,
        "events_requested": args.events,
        "end_to_end_s": e2e_s,
        "end_to_end_records_per_s": e2e_rps,
        "extract_records_per_s": stages_out["extract"]["records_per_s"],
        "extract_limit_records_per_s": req_json,
        "transform_records_per_s": stages_out["transform_quality"]["records_per_s"],
        "load_records_per_s": stages_out["load"]["records_per_s"],
        "load_limit_records_per_s": copy_rps,
        "peak_rss_mb": _med(pm_runs, lambda r: r.peak_rss_mb),
        "peak_pss_mb": _med(pm_runs, lambda r: r.peak_pss_mb),
        "end_to_end_cpu_s": pm_cpu_s,
        "direct_cpu_s": direct_cpu_s,
        "notebook_overhead_cpu_s": (pm_cpu_s - direct_cpu_s) if direct_runs else None,
        "notebook_overhead_s": (e2e_s - direct_s) if direct_s is not None else None,
        "notebook_overhead_runs_s": [p.wall_s - d.wall_s for p, d in zip(pm_runs, direct_runs)],
        "limit_sum_s": limit_sum_s,
        "direct_end_to_end_s": direct_s,
        "direct_records_per_s": rate(events, direct_s),
        "direct_peak_rss_mb": _med(direct_runs, lambda r: r.peak_rss_mb),
        "direct_peak_pss_mb": _med(direct_runs, lambda r: r.peak_pss_mb),
        "extract_limit_orjson_records_per_s": req_orjson,
        "dlt_reference_records_per_s": DLT_RECORDS_PER_S,
        "ratios": {
            "extract_vs_bare_requests": rate(stages_out["extract"]["records_per_s"], req_json),
            "extract_vs_bare_requests_orjson": rate(stages_out["extract"]["records_per_s"], req_orjson),
            "load_vs_raw_copy": rate(stages_out["load"]["records_per_s"], copy_rps),
            "end_to_end_vs_dlt": rate(e2e_rps, DLT_RECORDS_PER_S),
            "end_to_end_vs_limit_sum": (e2e_s / limit_sum_s) if e2e_s and limit_sum_s else None,
        },
        "stages": stages_out,
        "counts": first["counts"],
        "loaded": loaded,
        "copy_rows": copy_rows,
        "window": window,
        "per_page": args.per_page,
        "extra_params": list(args.params),
        "repeat": args.repeat,
        "limit_repeat": args.limit_repeat,
        "api_warmup_s": warmup_s,
        "machine": info,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": {
            "papermill": [
                {
                    **_run_record(r, r.metrics["stage_seconds"]),
                    "lib_seconds": {s: work_s(r.metrics["stages"][s]) for s in STAGES},
                    "run_id": r.metrics["run_id"],
                }
                for r in pm_runs
            ],
            "direct": [_run_record(r, r.metrics["seconds"]) for r in direct_runs],
            "limits": limits,
        },
    }


def add_reload(res: dict[str, Any], reload: dict[str, Any]) -> None:
    res["reload"] = reload
    res["load_reload_records_per_s"] = reload["rows"] / reload["load_s"]


def add_existing_rows(res: dict[str, Any], existing: dict[str, Any]) -> None:
    res["existing_rows"] = existing
    res["ratios"]["load_vs_copy_existing_rows"] = existing["load_vs_copy"]


def add_dlt(res: dict[str, Any], peer: dict[str, Any]) -> None:
    res["dlt_records_per_s"] = peer["records_per_s"]
    res["ratios"]["end_to_end_vs_dlt_same_run"] = rate(res["end_to_end_records_per_s"], peer["records_per_s"])
    res["dlt"] = {k: v for k, v in peer.items() if k != "runs"}
    res["runs"]["dlt"] = peer["runs"]
