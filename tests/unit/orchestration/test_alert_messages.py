"""Which outcome an alert tells (failure, success, recovery, quiet), and that a channel's URL is a secret."""

from __future__ import annotations

import pytest

from eventpipe.core.counts import RunCounts
from eventpipe.core.run_metrics import RunMetrics
from eventpipe.orchestration.alerts import alert_event
from eventpipe.settings import load_settings


def _run(status: str, extracted: int) -> RunMetrics:
    return RunMetrics.with_counts({"extracted": extracted}, run_id="r", kind="incremental", status=status)


def _earlier(*runs: tuple[str, int]) -> list[dict]:
    return [{"status": s, "extracted": n} for s, n in runs]


ALL = ("failure", "success", "recovery", "quiet")


@pytest.mark.parametrize(
    "run, earlier, on, event",
    [
        (_run("failed", 5), [], ALL, "failure"),
        (_run("failed", 5), [], ("success",), None),
        (_run("succeeded", 5), [], ALL, "success"),
        (_run("succeeded", 5), [], ("failure",), None),
        (_run("succeeded", 5), _earlier(("failed", 0), ("succeeded", 9)), ALL, "recovery"),
        (_run("succeeded", 5), _earlier(("succeeded", 9), ("failed", 0)), ("failure", "recovery"), None),
        (_run("succeeded", 0), _earlier(("succeeded", 3), ("succeeded", 4)), ALL, "quiet"),
        # quiet needs quiet_runs (2) runs with records in a row: a quiet one among them, or too few, is not
        (_run("succeeded", 0), _earlier(("succeeded", 0), ("succeeded", 4)), ALL, "success"),
        (_run("succeeded", 0), _earlier(("succeeded", 3)), ("quiet",), None),
        (_run("succeeded", 0), _earlier(("failed", 3), ("succeeded", 4)), ("quiet", "recovery"), "recovery"),
    ],
)
def test_the_event_told(run, earlier, on, event):
    assert alert_event(run, on, earlier, quiet_runs=2) == event


def test_counts_a_run_never_reached_are_not_quiet():
    stopped = RunMetrics(run_id="r", kind="incremental", status="succeeded", counts=RunCounts())
    assert alert_event(stopped, ALL, _earlier(("succeeded", 3), ("succeeded", 4)), 2) == "quiet"


def test_a_channel_url_and_its_tokens_are_redacted():
    url = "slack://T0AAAAAAA/B0BBBBBBB/XxYyZz0123456789abcdEF?channel=ops"
    settings = load_settings(None, ["alerts.channels=[ALERT_SLACK]"], env={"ALERT_SLACK": url})
    text = f"posting to {url} failed; token XxYyZz0123456789abcdEF, team T0AAAAAAA"
    redacted = settings.redactor.redact(text)
    for secret in ("XxYyZz0123456789abcdEF", "T0AAAAAAA", "B0BBBBBBB"):
        assert secret not in redacted
    assert redacted.startswith("posting to *** failed")
