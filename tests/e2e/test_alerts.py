"""Alerts against real receivers on loopback: an SMTP server (aiosmtpd) and an HTTP webhook (``http.server``).

A failed run is told to both with its pipeline, run id, failure class and first line, counts and run page;
a recovery and a quiet source are told when asked; a channel on a dead port is logged and counted and the
run's outcome stands; a channel's token never leaves in a log, report or message of ours.
"""

from __future__ import annotations

import email
import json
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from eventpipe.demo.data import DemoConfig
from support import NOW, Api, Project, runs, start_api

HOUR = timedelta(hours=1)
TOKEN = "T0KEN-0f-the-hook-7c41e9"  # the webhook's secret, in its path as a Slack or Teams URL has it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    """aiosmtpd's handler: every message the server accepted."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email_policy))
        return "250 OK"

    def texts(self) -> list[str]:
        return [
            str(m["Subject"]) + "\n" + m.get_body(("plain",)).get_content().replace("\r\n", "\n")
            for m in self.messages
        ]


@pytest.fixture
def smtp() -> Iterator[tuple[str, Mailbox]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield f"mailto://127.0.0.1:{port}?from=eventpipe@example.com&to=ops@example.com", box
    controller.stop()


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A JSON webhook receiver: each POST to ``/hooks/<TOKEN>`` is kept as (path, body)."""
    got: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got.append({"path": self.path, **json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"json://127.0.0.1:{server.server_address[1]}/hooks/{TOKEN}", got
    server.shutdown()
    server.server_close()


@pytest.fixture
def channels(project: Project, smtp, webhook, monkeypatch: pytest.MonkeyPatch) -> tuple[Mailbox, list]:
    """Three channels: mail, the webhook (its URL from a file, as a secret mount has it) and a dead port."""
    mail_url, box = smtp
    hook_url, hooks = webhook
    secrets = project.root / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "hook").write_text(hook_url + "\n")
    monkeypatch.setenv("ALERT_MAIL_URL", mail_url)
    monkeypatch.setenv("ALERT_HOOK_URL_FILE", str(secrets / "hook"))
    monkeypatch.setenv("ALERT_DEAD_URL", f"json://127.0.0.1:{free_port()}/nobody")
    return box, hooks


ALL = ["-p", "alerts.channels=[ALERT_MAIL_URL, ALERT_HOOK_URL, ALERT_DEAD_URL]", "-p", "alerts.timeout_s=3"]


def _metrics(project: Project, run_id: str) -> dict[str, Any]:
    return json.loads((project.reports / run_id / "metrics.json").read_text())


def test_a_failed_run_is_told_to_every_channel_and_a_dead_one_is_counted(
    project: Project, api: Api, channels, capsys: pytest.CaptureFixture[str]
):
    box, hooks = channels
    assert project.cli("run", *ALL, "-p", "quality.min_pass_rate=1.0") == 1  # the run's own failure
    (run,) = runs(project.database_url)
    assert run["status"] == "failed" and run["stage"] == "transform_quality"
    first_line = run["error"].splitlines()[0]
    counts = _metrics(project, run["run_id"])["counts"]

    (mail,) = box.texts()
    (hook,) = hooks
    assert hook["path"] == f"/hooks/{TOKEN}" and hook["type"] == "failure"
    for text in (mail, f"{hook['title']}\n{hook['message']}"):
        assert f"pipeline default run {run['run_id']} failed" in text
        assert "pipeline: default" in text
        assert f"failure: {run['failure_class']} in stage transform_quality: {first_line}" in text
        assert "QualityGateFailed" in first_line
        assert f"counts: extracted {counts['extracted']}, " in text and f"passed {counts['passed']}" in text
        assert f"run page: {project.reports / run['run_id'] / 'run.html'}" in text
    assert (project.reports / run["run_id"] / "run.html").is_file()

    alerts = _metrics(project, run["run_id"])["alerts"]
    assert alerts == {"event": "failure", "sent": 2, "failed": 1, "failed_channels": ["ALERT_DEAD_URL"]}
    out, err = capsys.readouterr()
    log = (project.reports / run["run_id"] / "run.log").read_text()
    assert "alert failure to ALERT_DEAD_URL failed: A Connection error occurred" in log
    # the hook's token: sent to the hook itself, never in our output, log or report folder
    for text in (
        out,
        err,
        log,
        *(p.read_text(errors="replace") for p in project.reports.rglob("*") if p.is_file()),
    ):
        assert TOKEN not in text


def test_a_dead_channel_never_fails_a_run_and_a_recovery_is_told(project: Project, api: Api, channels):
    box, hooks = channels
    on = ["-p", "alerts.on=[failure, recovery]"]
    assert project.cli("run", *ALL, *on, "-p", "quality.min_pass_rate=1.0") == 1
    assert project.cli("run", *ALL, *on) == 0  # recovered: told, though one channel is dead
    assert project.cli("run", *ALL, *on) == 0  # an ordinary success: not told (on has no success)
    failed, recovered, ordinary = runs(project.database_url)
    assert [r["status"] for r in (failed, recovered, ordinary)] == ["failed", "succeeded", "succeeded"]
    assert [h["type"] for h in hooks] == ["failure", "success"] and len(box.messages) == 2
    assert f"run {recovered['run_id']} recovered" in hooks[1]["title"]
    assert _metrics(project, recovered["run_id"])["alerts"]["failed_channels"] == ["ALERT_DEAD_URL"]
    assert "alerts" not in _metrics(project, ordinary["run_id"])


def test_a_source_gone_quiet_is_told(project: Project, webhook, monkeypatch: pytest.MonkeyPatch):
    """Two runs with records, then a window the source has nothing in: one alert, the third run's."""
    hook_url, hooks = webhook
    stops = NOW.replace(minute=0) - 4 * HOUR
    quiet = start_api(DemoConfig(start=stops - 6 * HOUR, events_per_hour=30, end=stops))
    monkeypatch.setenv("API_BASE_URL", quiet.url)
    monkeypatch.setenv("ALERT_HOOK_URL", hook_url)
    alert = [
        "-p",
        "alerts.channels=[ALERT_HOOK_URL]",
        "-p",
        "alerts.on=[failure, quiet]",
        "-p",
        "alerts.quiet_runs=2",
    ]
    try:
        windows = [
            ["-p", f"window.initial_since={(stops - 6 * HOUR).isoformat()}", "-p", "window.settle=5h"],
            ["-p", "window.settle=3h", "-p", "window.overlap=0s"],
            ["-p", "window.overlap=0s"],  # [now - 3h, now): after the source stopped
        ]
        for window in windows:
            assert project.cli("run", *alert, *window, "-p", "quality.min_pass_rate=0.9") == 0
    finally:
        quiet.server.stop()
    done = runs(project.database_url)
    assert [r["extracted"] > 0 for r in done] == [True, True, False]
    (hook,) = hooks
    assert hook["type"] == "warning" and f"run {done[-1]['run_id']} read 0 records" in hook["title"]
    assert "the 2 runs before had some" in hook["message"]


def test_alert_channels_are_named_not_written_and_must_be_set(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.delenv("ALERT_NOWHERE", raising=False)
    cases = [
        ("alerts.channels=[ALERT_NOWHERE]", "ALERT_NOWHERE, which is not set"),
        (f"alerts.channels=['json://127.0.0.1/hooks/{TOKEN}']", "never the URL itself"),
        ("alerts.on=[failed]", "use failure, success, recovery, quiet"),
    ]
    for override, says in cases:
        assert project.cli("run", "-p", override) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0] and TOKEN not in err[0], err
    assert not project.reports.exists()  # stopped before anything ran


def test_the_alert_message_names_a_served_run_page(project: Project, api: Api, webhook, monkeypatch):
    hook_url, hooks = webhook
    monkeypatch.setenv("ALERT_HOOK_URL", hook_url)
    base = "https://reports.example.com/eventpipe/"
    assert (
        project.cli(
            "run",
            "-p",
            "alerts.channels=[ALERT_HOOK_URL]",
            "-p",
            "alerts.on=[success]",
            "-p",
            f"alerts.run_page={base}",
        )
        == 0
    )
    (run,) = runs(project.database_url)
    (hook,) = hooks
    assert f"run page: {base}{run['run_id']}/run.html" in hook["message"]
    assert Path(project.reports / run["run_id"] / "run.html").is_file()
