"""``source check`` reads the window the next run reads and says why, shows one record as key -> value lines
before and after the field map at 80 columns, tallies what a run would make of every record it read, and
reports a body the configured paths do not fit the way the run does: after one request, naming the path."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from eventpipe.demo.data import DemoConfig
from eventpipe.settings import iso, parse_instant
from support import NOW, ROOT, Project, assert_one_line_usage_error, run_cli, runs, start_api

POSTHOG = str(ROOT / "params" / "sources" / "posthog.yaml")


def words(text: str) -> str:
    """The output as one line of words (rich wraps a long line at the terminal's width)."""
    return " ".join(text.split())


def tally(out: str) -> tuple[int, int, int, int]:
    """(records read, would load, dead letters, outside the window) as printed."""
    read = int(re.search(r"read \d+ pages?: (\d+) records", out).group(1))
    counts = [
        int(re.search(rf"^  {label} +(\d+)", out, re.M).group(1))
        for label in ("would load", "dead letter", "outside the window")
    ]
    return read, *counts


def test_at_80_columns_one_record_shows_its_mapped_fields_and_every_record_its_verdict(tmp_path: Path):
    now = NOW.replace(minute=0)
    # the preset asks an hour at a time from 7 days before now: its first slice holds more than a page
    first_hour = (NOW - timedelta(days=7), now - timedelta(days=7, hours=-1))
    api = start_api(
        DemoConfig(start=now - timedelta(days=7), events_per_hour=300, dirty_share=0.1),
        style="posthog-events",
    )
    try:
        proc = run_cli(
            tmp_path,
            "source",
            "check",
            "--params",
            POSTHOG,
            API_BASE_URL=api.url,
            POSTHOG_API_KEY=api.key,
            COLUMNS="80",
        )
    finally:
        api.server.stop()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "what the next run reads, as the first run (no watermark yet): from 7 days before now" in words(
        out
    )

    first = next(iter(api.data.events(*first_hour)))
    sent, mapped = out.split("the first record, as sent:\n")[1].split("after the field map:\n")
    assert re.search(r"^  distinct_id +\S", sent, re.M) and not re.search(r"^  user_id ", sent, re.M)
    user = re.search(r"^  user_id +(\S.*)$", mapped, re.M)  # the value as JSON (a text or a number)
    assert user and first.truth and str(json.loads(user.group(1))).strip() == first.truth.user_id
    assert re.search(r"^  event +\S", mapped, re.M) and re.search(r"^  timestamp +\S", mapped, re.M)
    assert "record rules: would load" in out

    read, loads, dead, outside = tally(out)
    page = list(api.data.events(*first_hour))[:read]
    assert read == 100 and outside == 0
    assert dead == sum(g.truth is None for g in page) > 0  # the demo's dirty records, and only they
    assert loads == read - dead
    assert re.search(r"^  dead letter +\d+  \(\w+ \d+", out, re.M)  # the reasons by name, with counts


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_the_window_is_the_next_runs_from_the_watermark_minus_the_overlap(
    project: Project, api, capsys, monkeypatch
):
    assert project.cli("run") == 0
    mark = parse_instant(runs(project.database_url)[-1]["window_until"])
    capsys.readouterr()
    api.server.requests = 0
    monkeypatch.setenv("COLUMNS", "80")
    assert project.cli("source", "check") == 0
    out = capsys.readouterr().out
    since = mark - timedelta(hours=1)
    assert f"window [{iso(since)}, " in out
    assert (
        f"what the next run reads, from the watermark {iso(mark)} minus window.overlap (1h) to now"
        in words(out)
    )
    assert f"'since': '{iso(since)}'" in out and api.server.requests == 1  # sent as, and asked once
    read, loads, dead, outside = tally(out)
    assert read == loads + dead + outside > 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_window_that_has_not_begun_reads_nothing_and_says_so(project: Project, api, capsys):
    later = iso(NOW + timedelta(hours=2))
    assert project.cli("source", "check", "-p", f"window.initial_since={later}") == 0
    assert "nothing to read yet: what the next run reads, as the first run" in capsys.readouterr().out
    assert api.server.requests == 0


@pytest.mark.parametrize(
    "override, named",
    [
        ("source.records=data", ["records path 'data'", "top-level keys: items, has_more"]),
        (
            "source.paginator.has_more_path=meta.more",
            ["has_more path 'meta.more'", "top-level keys: items, has_more"],
        ),
        ("source.paginator.total_path=total", ["total path 'total'", "source.paginator.total_path"]),
    ],
)
def test_source_check_reports_a_path_the_body_lacks_after_one_request(tmp_path: Path, api, override, named):
    extra = ["-p", "source.paginator.has_more_path="] if "total_path" in override else []
    proc = run_cli(tmp_path, "source", "check", "-p", override, *extra, API_BASE_URL=api.url, API_KEY=api.key)
    assert_one_line_usage_error(proc, *named, "without retrying")
    assert api.server.requests == 1


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_a_run_whose_path_the_body_lacks_fails_after_one_request_naming_it(project: Project, api):
    assert project.cli("run", "-p", "source.paginator.has_more_path=more") == 1
    failed = runs(project.database_url)[-1]
    assert failed["status"] == "failed" and failed["stage"] == "extract"
    assert "ResponseShapeError" in failed["error"] and "has_more path 'more'" in failed["error"]
    assert "top-level keys: items, has_more" in failed["error"] and "max_retries" not in failed["error"]
    assert api.server.requests == 1
