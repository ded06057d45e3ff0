"""The demo API the pipeline reads, in its own process (``run_pipeline.py demo-api``), so its CPU is not
counted in the pipeline's; it serves a past window and is warmed up before anything is timed."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from datetime import datetime
from pathlib import Path

from .common import API_KEY, DEMO_DIRTY, DEMO_DUP, DEMO_START, PY, iso
from .snapshot import Code


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DemoApi:
    """``run_pipeline.py demo-api`` in its own process, so its CPU is not counted in the pipeline's."""

    def __init__(
        self,
        code: Code,
        events_per_hour: int,
        log_path: Path,
        style: str = "contract",
        latency_ms: float = 0.0,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**code.env(), "API_KEY": API_KEY}
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [
                PY,
                code.run_pipeline,
                "demo-api",
                "--port",
                str(self.port),
                "--events-per-hour",
                str(events_per_hour),
                "--start",
                DEMO_START,
                "--dirty-share",
                str(DEMO_DIRTY),
                "--duplicate-share",
                str(DEMO_DUP),
                "--style",
                style,
                "--latency-ms",
                str(latency_ms),
            ],
            cwd=code.root,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the demo API exited with code {self.proc.returncode}")
            try:
                if requests.get(f"{self.url}/health", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise SystemExit(f"the demo API did not answer on {self.url} within {timeout}s")

    def warm_up(self, since: datetime, until: datetime) -> float:
        """One tiny page of the window: the API generates (and caches) every hour of it."""
        import requests

        t0 = time.perf_counter()
        r = requests.get(
            f"{self.url}/analytics",
            params={"page": 1, "per_page": 1, "since": iso(since), "until": iso(until)},
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=1800,
        )
        r.raise_for_status()
        return time.perf_counter() - t0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
