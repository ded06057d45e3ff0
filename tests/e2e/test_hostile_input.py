"""Hostile input end to end (issue 14, items 5-16): what a hostile config, user or API cannot do.

Command-line cases run ``run_pipeline.py`` as a subprocess (``support.run_cli``); secrets cases run the
whole pipeline against real PostgreSQL and a hostile HTTP server on loopback, then read everything the
run stored. Settings cases in-process are in tests/unit/base/test_settings.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest

from support import (
    NOW,
    ROOT,
    Project,
    assert_one_line_usage_error,
    query,
    run_cli,
    runs,
)

# -- items 6, 7, 8: secrets never stored or printed --------------------------------------------------

HOSTILE_KEY = "sk-live/HOSTILE+KEY42"


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers 400 with a body that echoes the request, as some API gateways do (key in every form)."""

    def do_GET(self) -> None:  # noqa: N802
        auth = self.headers.get("Authorization", "")
        body = json.dumps(
            {
                "error": "bad request <script>alert(1)</script>",
                "echo": f"Authorization: {auth}; encoded {quote(auth[7:], safe='')}; path {self.path}",
            }
        ).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def everything_stored(project: Project, database_url: str, proc: subprocess.CompletedProcess) -> str:
    """stdout, stderr, every file under reports/ and runs/, and every pipeline_runs row, as one text."""
    parts = [proc.stdout, proc.stderr]
    for root in (project.reports, project.runs):
        for path in sorted(root.rglob("*")) if root.exists() else []:
            if path.is_file():
                parts.append(path.read_bytes().decode("utf-8", "replace"))
    parts += [repr(r) for r in query(database_url, "SELECT * FROM pipeline_runs")]
    return "\n".join(parts)


def spawn_and_wait(project: Project, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = project.spawn(*args, env=env)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_an_api_error_that_echoes_the_key_stores_no_secret(tmp_path, pg_fresh_url, echo_api):
    """Item 8: the key (raw and URL-encoded) and the database password in the query are in no message
    stored or printed: pipeline_runs.error, metrics.json, run.log, the report's banner and error cell."""
    database_url = f"{pg_fresh_url}?password=QueryPw4242"  # trust auth: PostgreSQL ignores it
    project = Project(tmp_path, database_url)
    env = {"DATABASE_URL": database_url, "API_BASE_URL": echo_api, "API_KEY": HOSTILE_KEY}
    proc = spawn_and_wait(project, "run", env=env)
    assert proc.returncode == 1, proc.stderr
    (run,) = runs(pg_fresh_url)
    assert run["status"] == "failed" and run["stage"] == "extract"
    assert "400" in run["error"]
    report = project.reports / run["run_id"]
    assert {"metrics.json", "run.log", "01_extract.ipynb"} <= {p.name for p in report.iterdir()}
    stored = everything_stored(project, pg_fresh_url, proc)
    for secret in (HOSTILE_KEY, quote(HOSTILE_KEY, safe=""), "HOSTILE", "QueryPw4242"):
        assert secret not in stored, secret


def test_a_password_in_the_query_is_masked_in_a_successful_run(tmp_path, pg_fresh_url, api):
    """Item 7: stderr, run.log, metrics.json and the 03_load report show ``password=***``."""
    database_url = f"{pg_fresh_url}?password=QueryPw4242"
    project = Project(tmp_path, database_url)
    env = {"DATABASE_URL": database_url, "API_BASE_URL": api.url, "API_KEY": api.key}
    proc = spawn_and_wait(project, "run", env=env)
    assert proc.returncode == 0, proc.stderr
    (run,) = runs(pg_fresh_url)
    metrics = json.loads((project.reports / run["run_id"] / "metrics.json").read_text())
    assert metrics["database"].endswith("?password=***")
    assert "password=***" in (project.reports / run["run_id"] / "03_load.ipynb").read_text()
    assert "QueryPw4242" not in everything_stored(project, pg_fresh_url, proc)


def test_an_unencoded_at_in_the_database_password_leaks_no_part_of_it(tmp_path, pg_database):
    """Item 6: ``u:Pg@LEAKEDTAIL99@host`` connects to ``host`` as ``u``; the error names no part of the password."""
    url = pg_database.replace("postgresql://postgres@", "postgresql://nosuchrole:Pg@LEAKEDTAIL99@")
    proc = run_cli(tmp_path, "status", DATABASE_URL=url)
    line = assert_one_line_usage_error(proc, "cannot connect", "nosuchrole")
    assert "LEAKEDTAIL99" not in proc.stdout + proc.stderr and "Pg@" not in line
    assert "127.0.0.1" in line  # the host is the host, not the password's tail


def test_a_sqlite_url_with_credentials_is_refused_and_creates_nothing(tmp_path):
    proc = run_cli(tmp_path, "status", DATABASE_URL="sqlite://user:SqlitePw9@/x.sqlite")
    assert "SqlitePw9" not in assert_one_line_usage_error(proc, "sqlite", "no user, password or host")
    assert [p.name for p in tmp_path.iterdir()] == []


# -- item 10: run_id and run_dir stay inside runs/ ----------------------------------------------------


def papermill(tmp_path: Path, *params: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite",
    }
    (tmp_path / "params.yaml").write_text(f"paths:\n  runs_dir: {tmp_path / 'a' / 'b' / 'runs'}\n")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(ROOT / "notebooks" / "01_extract.ipynb"),
            str(tmp_path / "out.ipynb"),
            "-p",
            "params_file",
            str(tmp_path / "params.yaml"),
            *params,
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "params",
    [("-p", "run_id", "../../victim"), ("-p", "run_dir", "../victim")],
    ids=["run_id", "relative-run_dir"],
)
def test_a_run_id_or_run_dir_outside_runs_is_refused_and_touches_nothing(tmp_path, params):
    victim = tmp_path / "a" / "victim"
    (victim / "raw").mkdir(parents=True)
    (victim / "raw" / "precious.txt").write_text("keep me")
    before = sorted((tmp_path / "a").rglob("*"))
    proc = papermill(tmp_path, *params)
    assert proc.returncode != 0
    assert "not a plain name" in proc.stderr or "not inside paths.runs_dir" in proc.stderr, proc.stderr[
        -2000:
    ]
    assert (victim / "raw" / "precious.txt").read_text() == "keep me"
    assert sorted((tmp_path / "a").rglob("*")) == before  # nothing created, emptied or moved


# -- item 12: a waiting replay reads the pending dead letters only once it holds the lock ------------


def add_scroll_events(api, n: int) -> None:
    at = NOW - timedelta(minutes=30)
    for i in range(n):
        t = at + timedelta(seconds=i)
        event = {"user_id": f"scroller{i}", "event": "Scroll", "timestamp": t.isoformat(), "properties": {}}
        api.data.append(event, t)


def test_a_replay_waiting_for_another_never_replays_its_records_again(tmp_path, pg_fresh_url, api):
    """A replays and is held just before its load commits; B starts with ``--wait``. Afterwards no record
    is both in ``analytics`` and pending, and the replayed records add up to those that now pass."""
    project = Project(tmp_path, pg_fresh_url)
    env = {"DATABASE_URL": pg_fresh_url, "API_BASE_URL": api.url, "API_KEY": api.key}
    add_scroll_events(api, 12)
    assert spawn_and_wait(project, "run", "-p", "quality.min_pass_rate=0", env=env).returncode == 0
    pending = query(pg_fresh_url, "SELECT count(*) FROM dead_letter WHERE status = 'pending'")[0][0]
    assert pending >= 12
    allow = ("-p", "quality.allowed_events=page_view,click,sign_up,purchase,logout,scroll")

    a = project.spawn_held("load.before_commit=sleep:6", "replay-dlq", *allow, env=env)
    b = project.spawn("replay-dlq", "--wait", *allow, env=env)
    a_out, a_err = a.communicate(timeout=300)
    b_out, b_err = b.communicate(timeout=300)
    assert a.returncode == 0, a_err
    assert b.returncode == 0, b_err

    both = query(
        pg_fresh_url,
        "SELECT count(*) FROM dead_letter d JOIN analytics a ON a.user_id = d.raw::jsonb->>'user_id' "
        "AND a.event_type = 'scroll' WHERE d.status = 'pending'",
    )[0][0]
    assert both == 0
    replayed = query(
        pg_fresh_url, "SELECT replayed_run_id, count(*) FROM dead_letter WHERE status = 'replayed' GROUP BY 1"
    )
    assert sum(n for _, n in replayed) == 12
    replays = [r for r in runs(pg_fresh_url) if r["kind"] == "replay"]
    assert replays[0]["status"] == "succeeded" and replays[0]["loaded"] == 12
    assert [rid for rid, _ in replayed] == [replays[0]["run_id"]]  # all by A; B found none of them pending
    scroll_rows = query(pg_fresh_url, "SELECT count(*) FROM analytics WHERE event_type = 'scroll'")[0][0]
    assert scroll_rows == 12


# -- item 13: one clear line, exit 2 -------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, env, must_mention",
    [
        (["status"], {"DATABASE_URL": "postgresql://u:pw@127.0.0.1:notaport/db"}, ["port", "notaport"]),
        (["backfill", "--start", "0001-01-01T00:00:00+01:00", "--end", "2024-05-01"], {}, ["out of range"]),
        (["backfill", "--start", "2024-05-01", "--end", "9999-12-31T23:59:59-01:00"], {}, ["out of range"]),
        (["run", "-p", "window.overlap=999999999d"], {}, ["window.overlap", "out of range"]),
        (["demo-api", "--port", "99999"], {}, ["--port"]),
        (["demo-api", "--port", "-1"], {}, ["--port"]),
        (["run", "-p", "api.timeout_s=inf"], {}, ["api.timeout_s", "finite"]),
        (["run", "-p", "api.timeout_s=nan"], {}, ["api.timeout_s", "finite"]),
        (["status", "--limit", "-1"], {}, ["--limit"]),
        (["run", "-p", "runner.cell_timeout_s=0"], {}, ["runner.cell_timeout_s"]),
        (["schedule", "--every", "1ms"], {}, ["--every", "at least 1s"]),
        (["backfill", "--start", "2000-01-01", "--end", "2024-01-01", "--chunk", "1ms"], {}, ["--chunk"]),
    ],
    ids=[
        "port-not-a-number",
        "start-before-year-1",
        "end-after-year-9999",
        "overlap-overflow",
        "demo-port-too-large",
        "demo-port-negative",
        "timeout-inf",
        "timeout-nan",
        "status-limit-negative",
        "cell-timeout-zero",
        "schedule-every-1ms",
        "billions-of-partitions",
    ],
)
def test_hostile_command_lines_are_one_line_and_exit_2(tmp_path, args, env, must_mention):
    assert_one_line_usage_error(run_cli(tmp_path, *args, **env), *must_mention)


def test_a_params_file_that_is_binary_is_one_line(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(bytes(range(256)) * 8)
    assert_one_line_usage_error(run_cli(tmp_path, "run", "--params", str(path)), "binary.yaml", "UTF-8")


def test_a_nul_byte_in_a_path_setting_is_one_line(tmp_path):
    path = tmp_path / "nul.yaml"
    path.write_text('paths:\n  reports_dir: "rep\\0orts"\n', encoding="utf-8")
    assert_one_line_usage_error(run_cli(tmp_path, "run", "--params", str(path)), "paths.reports_dir", "NUL")


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    path = tmp_path / "bomb.yaml"
    levels = ["  a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol']"]
    levels += [f"  {c}: &{c} [{','.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    path.write_text("api:\n" + "\n".join(levels) + "\n", encoding="utf-8")
    proc = run_cli(tmp_path, "run", "--params", str(path))
    assert len(proc.stderr) < 400
    assert_one_line_usage_error(proc, "bomb.yaml", "aliases")


def test_a_report_folder_deleted_mid_run_fails_the_run_without_a_traceback(project, api):
    proc = project.spawn_held("extract.page=sleep:3", "run")
    shutil.rmtree(project.reports)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    (run,) = runs(project.database_url)
    assert run["status"] == "failed"
    assert (project.reports / run["run_id"] / "metrics.json").is_file()  # the folder is made again for it


# -- item 14: clamp what is merely large, and say so ---------------------------------------------------


def test_a_thousand_backfill_workers_are_clamped_and_said_so(project, api):
    start = NOW.replace(minute=0) - timedelta(hours=4)
    proc = spawn_and_wait(
        project,
        "backfill",
        "--start",
        start.isoformat(),
        "--end",
        (start + timedelta(hours=3)).isoformat(),
        "--chunk",
        "1h",
        "--workers",
        "1000",
        "-p",
        "runner.max_workers=2",
        env={},
    )
    assert proc.returncode == 0, proc.stderr
    assert "--workers 1000 clamped to 2" in proc.stderr
    assert [r["status"] for r in runs(project.database_url)] == ["succeeded"] * 3


# -- item 15: the kernel's start-up warning never joins a one-line error ------------------------------


def test_a_settings_error_after_the_kernel_started_is_one_line_every_time(tmp_path):
    """The shared kernel starts before the database is checked; an unreachable database is then the one
    line on stderr, never preceded by the kernel's "running over TCP without encryption" warning."""
    for attempt in range(4):
        proc = run_cli(tmp_path, "run", DATABASE_URL="postgresql://u@127.0.0.1:1/db")
        line = assert_one_line_usage_error(proc, "cannot connect")
        assert "encryption" not in proc.stderr, (attempt, proc.stderr)
        assert line.startswith("error:")
