"""Memory and CPU of a process tree: the summed RSS and PSS of a command and its descendants sampled every
0.1 s, their CPU seconds, and the arrival time of the runner's ``stage X: executing|done`` lines."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class TreeSampler:
    """Every ``interval`` s: the summed RSS and PSS of a process and all its descendants, and each one's CPU
    seconds. RSS counts a page shared by two processes (the libraries the kernel and a transform worker
    both map) in each; PSS splits it between them, so the PSS sum is what the tree holds."""

    def __init__(self, pid: int, interval: float = 0.1):
        import psutil

        self.psutil = psutil
        self.root = psutil.Process(pid)
        self.interval = interval
        # (time.time(), RSS bytes, PSS bytes, pid -> CPU s)
        self.samples: list[tuple[float, int, int, dict[int, float]]] = []
        self.rss_by_pid: list[dict[int, int]] = []  # per sample: each process's RSS bytes
        self.labels: dict[int, str] = {}  # pid -> what the process is (from its command line)
        self._procs: dict[int, Any] = {pid: self.root}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        ps = self.psutil
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except (ps.NoSuchProcess, ps.ZombieProcess):
            return
        total, pss, cpu, each = 0, 0, {}, {}
        for p in procs:
            p = self._procs.setdefault(p.pid, p)  # keep one Process object per pid
            try:
                if p.pid not in self.labels:
                    self.labels[p.pid] = _label(p.cmdline())
                mem = p.memory_full_info()  # /proc/PID/smaps_rollup: ~0.1 ms
                total += mem.rss
                each[p.pid] = mem.rss
                pss += mem.pss
                t = p.cpu_times()
                cpu[p.pid] = t.user + t.system
            except (ps.NoSuchProcess, ps.AccessDenied, ps.ZombieProcess):
                continue
        self.samples.append((time.time(), total, pss, cpu))
        self.rss_by_pid.append(each)

    def _loop(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                return

    def peak_mb(
        self, since: float | None = None, until: float | None = None, pss: bool = False
    ) -> float | None:
        size = [(t, p if pss else r) for t, r, p, _ in self.samples]
        vals = [b for t, b in size if (since is None or t >= since) and (until is None or t <= until)]
        if (
            not vals and since is not None
        ):  # a window shorter than the interval: the next sample stands for it
            vals = [b for t, b in size if t >= since][:1]
        return max(vals) / 2**20 if vals else None

    def peak_breakdown_mb(self) -> dict[str, float]:
        """At the sample of the highest summed RSS: each process's RSS (MB), by what it is."""
        if not self.samples:
            return {}
        k = max(range(len(self.samples)), key=lambda i: self.samples[i][1])
        out: dict[str, float] = {}
        for pid, rss in sorted(self.rss_by_pid[k].items()):
            name = self.labels.get(pid, "?")
            while name in out:
                name += "'"
            out[name] = round(rss / 2**20, 1)
        return out

    def cpu_between(self, since: float, until: float) -> float | None:
        """CPU seconds the tree spent in ``[since, until]`` (to within one sampling interval)."""
        before: dict[int, float] = {}
        inside: dict[int, float] = {}
        for t, _, _, cpu in self.samples:
            if t < since:
                before.update(cpu)
            elif t <= until:
                inside.update(cpu)
        if not inside:
            return None
        return sum(v - before.get(pid, 0.0) for pid, v in inside.items())


def _label(cmdline: list[str]) -> str:
    """A process of the measured tree, in a word: the runner, the kernel, a transform worker, or its name."""
    text = " ".join(cmdline)
    if "ipykernel" in text:
        return "kernel"
    if "multiprocessing" in text:
        return "worker"
    if "run_pipeline" in text or "eventpipe" in text:
        return "runner"
    return (cmdline[0].rsplit("/", 1)[-1] if cmdline else "?")[:20]


@dataclass
class CpuUse:
    """CPU seconds while one measured command ran: its own tree, the demo API, and the whole machine."""

    tree_s: float = 0.0
    api_s: float | None = None
    machine_busy_s: float = 0.0

    @property
    def others_s(self) -> float:
        """Busy CPU not spent by the command or the API: PostgreSQL (ours too) and anything else running."""
        return max(0.0, self.machine_busy_s - self.tree_s - (self.api_s or 0.0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "tree_s": self.tree_s,
            "api_s": self.api_s,
            "machine_busy_s": self.machine_busy_s,
            "others_s": self.others_s,
        }


def _busy(t: Any) -> float:
    return (
        sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    )


def _proc_cpu(pid: int | None) -> float | None:
    import psutil

    try:
        t = psutil.Process(pid).cpu_times() if pid else None
    except psutil.Error:
        return None
    return t.user + t.system if t else None


STAGE_LINE = re.compile(rb"stage (\w+): (executing|done)")  # the runner's log lines around each notebook


def run_sampled(
    cmd: list[str], cwd: Path, env: dict[str, str], log_path: Path, timeout: float, api_pid: int | None
) -> tuple[int, float, TreeSampler, CpuUse, list[tuple[float, str, str]]]:
    """Run a command with stdout+stderr to a log file; wall seconds, RSS samples, CPU use of its tree (and of
    the demo API's process ``api_pid``), and the arrival time of each runner line ``stage X: executing|done``."""
    import resource

    import psutil

    marks: list[tuple[float, str, str]] = []

    def copy_output(stream: Any, log: Any) -> None:
        for line in stream:
            m = STAGE_LINE.search(line)
            if m:
                marks.append((time.time(), m.group(1).decode(), m.group(2).decode()))
            log.write(line)

    with open(log_path, "wb") as log:
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the command and every descendant it waited for
        sys0, api0 = psutil.cpu_times(), _proc_cpu(api_pid)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        reader = threading.Thread(target=copy_output, args=(proc.stdout, log), daemon=True)
        reader.start()
        with TreeSampler(proc.pid) as sampler:
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise SystemExit(f"{cmd[2]} took longer than {timeout}s: see {log_path}") from None
        wall = time.perf_counter() - t0
        reader.join(timeout=10)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        sys1, api1 = psutil.cpu_times(), _proc_cpu(api_pid)
    cpu = CpuUse(
        tree_s=(ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
        api_s=(api1 - api0) if api0 is not None and api1 is not None else None,
        machine_busy_s=_busy(sys1) - _busy(sys0),
    )
    return rc, wall, sampler, cpu, marks
