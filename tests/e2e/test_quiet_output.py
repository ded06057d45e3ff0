"""What ``run --demo`` prints: a line per stage and the summary (at most 25 lines), in a pipe and on a terminal;
papermill's cell-by-cell log and the notebooks' outputs in ``run.log``, and on the console with ``-v`` only;
a failure's reason printed once, warnings on the way always shown."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import nbformat
import pytest

from support import RUN_PIPELINE

MAX_LINES = 25  # what `make demo` may print after the install
STAGE_LINE = {
    "extract": re.compile(r"^ *extract +[\d,]+ pages?, [\d,]+ records?  \d+\.\ds$"),
    "transform": re.compile(
        r"^ *transform +[\d,]+ parts?: [\d,]+ passed, [\d,]+ rejected, [\d,]+ duplicates?"
    ),
    "load": re.compile(r"^ *load +[\d,]+ rows?: [\d,]+ inserted, [\d,]+ updated, [\d,]+ unchanged"),
}


def _demo_argv(tmp_path: Path, *extra: str) -> list[str]:
    """``run --demo`` (what `make demo` runs), its reports, runs and database in ``tmp_path``."""
    return [
        sys.executable,
        RUN_PIPELINE,
        "run",
        "--demo",
        "-p",
        f"paths.reports_dir={tmp_path / 'reports'}",
        "-p",
        f"paths.runs_dir={tmp_path / 'runs'}",
        *extra,
    ]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("API_BASE_URL", "API_KEY")}
    return {**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite'}", "COLUMNS": "80", "LINES": "30"}


def _run_log(tmp_path: Path) -> str:
    [log] = (tmp_path / "reports").glob("*/run.log")
    return log.read_text()


def test_demo_in_a_pipe_prints_a_line_per_stage_and_the_summary(tmp_path):
    proc = subprocess.run(
        _demo_argv(tmp_path), env=_env(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    lines = (proc.stderr + proc.stdout).splitlines()
    assert len(lines) <= MAX_LINES, "\n".join(lines)
    stages = [
        line
        for line in proc.stderr.splitlines()
        if line.split()[:1] in (["extract"], ["transform"], ["load"])
    ]
    assert [s.split()[0] for s in stages] == ["extract", "transform", "load"], proc.stderr
    for line in stages:
        assert STAGE_LINE[line.split()[0]].match(line), line
    assert "succeeded" in proc.stdout and "report " in proc.stdout
    everything = proc.stdout + proc.stderr
    assert "papermill" not in everything and "Executing Cell" not in everything and "\x1b[" not in everything
    # the detail is all in run.log, and the executed notebooks keep the outputs
    log = _run_log(tmp_path)
    assert "Executing Cell 1" in log and "Ending Cell" in log and "extracted " in log
    [report] = (tmp_path / "reports").glob("*/01_extract.ipynb")
    cells = nbformat.read(str(report), as_version=4).cells
    assert any(c.get("outputs") for c in cells if c.cell_type == "code")


def test_demo_with_verbose_prints_the_cell_log_and_the_outputs(tmp_path):
    since = "-p", "window.initial_since=2025-06-02T10:00:00Z"  # two hours of the pinned clock: a small run
    proc = subprocess.run(
        _demo_argv(tmp_path, *since, "-v"), env=_env(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "INFO papermill: Executing Cell 1" in proc.stderr and "Ending Cell" in proc.stderr
    assert "pages answered" in proc.stderr  # a notebook's own output
    assert re.search(r"^extract +\d+ pages?, ", proc.stderr, re.M)  # the stage lines, plain under -v


class Screen:
    """What a terminal shows after ``data``: enough of a VT100 for rich's live display (carriage return,
    line feed, cursor up, erase line; other escape sequences take no room)."""

    def __init__(self, data: str):
        self.rows: list[str] = [""]
        row = col = 0
        for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|.", data, re.S):
            if token == "\n":
                row, col = row + 1, 0
                if row == len(self.rows):
                    self.rows.append("")
            elif token == "\r":
                col = 0
            elif token.startswith("\x1b["):
                if token.endswith("A"):
                    row = max(0, row - int(token[2:-1] or 1))
                elif token.endswith("K"):
                    self.rows[row] = self.rows[row][:col] if token[2:-1] in ("", "0") else ""
            elif token.startswith("\x1b") or not token.isprintable():
                continue
            else:
                line = self.rows[row].ljust(col)
                self.rows[row] = line[:col] + token + line[col + 1 :]
                col += 1

    def lines(self) -> list[str]:
        rows = [r.rstrip() for r in self.rows]
        while rows and not rows[-1]:
            rows.pop()
        return rows


def _on_a_terminal(argv: list[str], env: dict[str, str], timeout: float = 300) -> tuple[int, str]:
    """Run ``argv`` with stdin, stdout and stderr on a pseudo-terminal of 80x30; its exit code and output."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 80, 0, 0))
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm-256color"}, close_fds=True
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=timeout), b"".join(chunks).decode("utf-8", "replace")


def test_demo_on_a_terminal_updates_each_stage_line_in_place(tmp_path):
    code, raw = _on_a_terminal(_demo_argv(tmp_path), _env(tmp_path))
    assert code == 0, raw
    lines = Screen(raw).lines()
    assert len(lines) <= MAX_LINES, "\n".join(lines)
    stages = [line.strip() for line in lines if any(p.match(line.strip()) for p in STAGE_LINE.values())]
    assert [s.split()[0] for s in stages] == ["extract", "transform", "load"], "\n".join(lines)
    for line in stages:
        assert STAGE_LINE[line.split()[0]].match(line), line
    assert any("succeeded" in line for line in lines)
    # the extract line was rewritten as the pages came in, in place (more states than lines on the screen)
    states = set(re.findall(r"extract +([\d,]+ pages?), ", raw))
    assert len(states) >= 2, states
    assert "papermill" not in raw


@pytest.fixture
def refused_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("retries, attempts", [(0, "1 attempt"), (1, "2 attempts")])
def test_refused_connection_said_as_such_once(tmp_path, refused_port, retries, attempts):
    from support import API_KEY, run_cli

    proc = run_cli(
        tmp_path,
        "run",
        "-p",
        f"paths.reports_dir={tmp_path / 'reports'}",
        "-p",
        f"paths.runs_dir={tmp_path / 'runs'}",
        "-p",
        f"api.max_retries={retries}",
        "-p",
        "api.backoff_initial_s=0.05",
        API_BASE_URL=f"http://127.0.0.1:{refused_port}",
        API_KEY=API_KEY,
    )
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    refused = f"connection refused by 127.0.0.1:{refused_port}"
    assert f"still failing after {attempts} (last: connection: {refused}" in " ".join(out.split())
    assert "is the API running?" in out and "connection dropped" not in out
    assert " ".join(out.split()).count("RetriesExhausted") == 1, out  # the error, once: in the FAILED block
    assert re.search(r"^extract +failed after \d+\.\ds$", proc.stderr, re.M), proc.stderr
    if retries:  # the warning on the way reaches the terminal too
        assert f"page 1 attempt 1 failed (connection: {refused}" in proc.stderr
    assert "RetriesExhausted" in _run_log(tmp_path)  # and the log keeps it
