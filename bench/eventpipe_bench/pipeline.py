"""The pipeline's runs: through papermill (``run_pipeline.py backfill`` over the window as one partition), and
the same three stage functions called directly in one fresh process (``run.py _direct``, no notebooks)."""

from __future__ import annotations

import cProfile
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .common import API_KEY, PY, STAGES, iso, say, tail
from .sampling import STAGE_LINE, CpuUse, run_sampled
from .snapshot import Code, child_parser, import_measured


@dataclass
class PipelineRun:
    wall_s: float
    peak_rss_mb: float | None
    stage_peak_rss_mb: dict[str, float | None]
    metrics: dict[str, Any]
    cpu: CpuUse = field(default_factory=CpuUse)
    stage_cpu_s: dict[str, float | None] = field(default_factory=dict)
    peak_pss_mb: float | None = None
    peak_breakdown_mb: dict[str, float] = field(default_factory=dict)  # at the peak: RSS per process


@dataclass(frozen=True)
class Target:
    """What every pipeline run of one benchmark shares: the code measured and its environment (the demo API's
    and the database's URLs), the window, the page size, the time one run may take, and the demo API's
    process (its CPU is counted apart)."""

    code: Code
    env: dict[str, str]
    since: datetime
    until: datetime
    hours: int
    per_page: int
    timeout: float
    api_pid: int | None = None


def pipeline_env(code: Code, api_url: str, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in code.env().items() if k != "EVENTPIPE_KEEP_RUNS"}
    env.update(API_BASE_URL=api_url, API_KEY=API_KEY, DATABASE_URL=db_url, PYTHONUNBUFFERED="1")
    return env


def run_papermill(t: Target, tmp: Path, rerun: bool = False) -> PipelineRun:
    tmp.mkdir(parents=True, exist_ok=True)
    cmd = [
        PY,
        t.code.run_pipeline,
        "backfill",
        "--start",
        iso(t.since),
        "--end",
        iso(t.until),
        "--chunk",
        f"{t.hours}h",
        *(["--rerun"] if rerun else []),
        *t.code.override_args(t.per_page, tmp),
    ]
    log = tmp / "papermill.log"
    rc, wall, sampler, cpu, marks = run_sampled(cmd, t.code.root, t.env, log, t.timeout, t.api_pid)
    found = sorted((tmp / "reports").glob("*/metrics.json"))
    if rc != 0 or len(found) != 1:
        raise SystemExit(f"the papermill run failed (exit {rc}, {len(found)} metrics.json):\n{tail(log)}")
    metrics = json.loads(found[0].read_text())
    if metrics.get("status") != "succeeded":
        raise SystemExit(f"the papermill run did not succeed: {metrics.get('error')}\n{tail(log)}")
    marks = marks or run_log_marks(found[0].parent / "run.log")
    # each stage: from its "executing" line to its "done" line (kernel start included; with a shared
    # kernel, the first stage carries the kernel's start)
    starts = {st: at for at, st, what in marks if what == "executing"}
    ends = {st: at for at, st, what in marks if what == "done"}
    peaks: dict[str, float | None] = {}
    cpus: dict[str, float | None] = {}
    for st in STAGES:
        if st in starts and st in ends:
            peaks[st] = sampler.peak_mb(starts[st], ends[st])
            cpus[st] = sampler.cpu_between(starts[st], ends[st])
        else:
            peaks[st] = cpus[st] = None
    if not all(st in starts and st in ends for st in STAGES):
        print(
            "warning: the runner's 'stage X: executing/done' lines were not all seen: per-stage RSS and CPU "
            "are missing",
            file=sys.stderr,
        )
    return PipelineRun(
        wall,
        sampler.peak_mb(),
        peaks,
        metrics,
        cpu,
        cpus,
        sampler.peak_mb(pss=True),
        sampler.peak_breakdown_mb(),
    )


def run_log_marks(path: Path) -> list[tuple[float, str, str]]:
    """The runner's ``stage X: executing|done`` lines as ``run.log`` timed them (the console is quiet: one
    line per stage, after it), as epoch seconds: ``asctime`` is local time with milliseconds."""
    marks = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = STAGE_LINE.search(line.encode())
        if m and len(line) > 23:
            at = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000
            marks.append((at, m.group(1).decode(), m.group(2).decode()))
    return marks


def run_reload(t: Target, tmp: Path) -> dict[str, Any]:
    """The same window again: every row conflicts, so the load takes the staging + upsert path."""
    say("reload: the same window again (every row already stored: staging + upsert path)")
    again = run_papermill(t, tmp, rerun=True)
    load = again.metrics["stages"]["load"]
    say(
        f"  reload: load {load['loaded']:,} rows in {load['seconds']:.2f}s "
        f"= {load['loaded'] / load['seconds']:,.0f}/s ({load['unchanged']:,} unchanged)"
    )
    return {
        "load_s": load["seconds"],
        "rows": load["loaded"],
        "unchanged": load["unchanged"],
        "end_to_end_s": again.wall_s,
    }


def run_direct(t: Target, tmp: Path, only: str | None = None, profile_out: Path | None = None) -> PipelineRun:
    """A fresh Python process that runs ``extract``, ``transform_quality``, ``load`` as plain calls."""
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / ("direct.json" if not only else f"direct-{only}.json")
    cmd = [
        *t.code.child_cmd("_direct", out),
        "--since",
        iso(t.since),
        "--until",
        iso(t.until),
        "--run-dir",
        str(tmp / "run"),
        *t.code.override_args(t.per_page, tmp),
        *(["--only", only] if only else []),
        *(["--profile-out", str(profile_out)] if profile_out else []),
    ]
    log = tmp / ("direct.log" if not only else f"direct-{only}.log")
    rc, wall, sampler, cpu, _ = run_sampled(cmd, t.code.root, t.env, log, t.timeout, t.api_pid)
    if rc != 0 or not out.is_file():
        raise SystemExit(f"the direct run failed (exit {rc}):\n{tail(log)}")
    result = json.loads(out.read_text())
    stage_peaks = {s: sampler.peak_mb(result["marks"][s][0], result["marks"][s][1]) for s in result["marks"]}
    return PipelineRun(
        wall, sampler.peak_mb(), stage_peaks, result, cpu, result["cpu_s"], sampler.peak_mb(pss=True)
    )


def direct_child(argv: list[str]) -> int:
    """``bench/run.py _direct ...``: the body of the direct run (in its own process)."""
    p = child_parser("_direct")
    p.add_argument("--since", required=True)
    p.add_argument("--until", required=True)
    p.add_argument("--run-dir", required=True)
    p.add_argument("-p", dest="overrides", action="append", default=[])
    p.add_argument("--only", choices=STAGES)
    p.add_argument("--profile-out")
    a = p.parse_args(argv)
    import_measured(a.code_root)
    from eventpipe.notebook import stages

    if not Path(stages.__file__).resolve().is_relative_to(Path(a.code_root).resolve()):
        raise SystemExit(f"imported {stages.__file__}, not the code under {a.code_root}")

    stages.setup_logging()
    ctx = stages.StageContext.from_parameters(
        a.since, a.until, "bench-direct", a.run_dir, a.params_file, a.overrides, scratch=False
    )
    # a run of the runner's kind, not a notebook run by hand: the same three calls in one process, as in
    # the runner's shared kernel, so the transform ahead and the early load apply as they do there
    ctx = dataclasses.replace(ctx, kind="backfill")
    calls = {
        "extract": lambda: stages.extract(ctx),
        "transform_quality": lambda: stages.transform_quality(ctx).metrics,
        "load": lambda: stages.load(ctx),
    }
    marks: dict[str, tuple[float, float]] = {}
    seconds: dict[str, float] = {}
    cpu_s: dict[str, float] = {}
    metrics: dict[str, Any] = {}
    for name in STAGES:
        if a.only and name != a.only:
            continue
        prof = cProfile.Profile() if a.profile_out else None
        start, t0, c0 = time.time(), time.perf_counter(), time.process_time()
        if prof:
            prof.enable()
        metrics[name] = calls[name]()
        if prof:
            prof.disable()
            prof.dump_stats(a.profile_out)
        seconds[name] = time.perf_counter() - t0
        cpu_s[name] = time.process_time() - c0
        marks[name] = (start, time.time())
    Path(a.out).write_text(
        json.dumps({"marks": marks, "seconds": seconds, "cpu_s": cpu_s, "stages": metrics}, default=str)
    )
    return 0
