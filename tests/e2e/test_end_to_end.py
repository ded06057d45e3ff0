"""The whole pipeline through papermill, on SQLite and on PostgreSQL, against the demo API on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta

import nbformat
import pytest

from eventpipe.demo.server import DEMO_KEY
from eventpipe.settings import parse_instant
from support import API_KEY, NOW, ROOT, expected_table, query, runs, table_rows


def last_run(url: str) -> dict:
    return runs(url)[-1]


def test_run_loads_exactly_the_generated_table(project, api):
    assert project.cli("run") == 0
    run = last_run(project.database_url)
    assert run["status"] == "succeeded" and run["kind"] == "incremental"
    since, until = run["window_since"], run["window_until"]

    # the table is exactly what the generator says (messy forms normalised, last duplicate wins)
    assert table_rows(project.database_url) == expected_table(api, since, until)

    # every distinct dirty record is in dead_letter once, with reasons
    dirty = {g.body.decode() for g in api.data.events(since, until) if g.truth is None}
    dl = query(project.database_url, "SELECT raw, stage, reasons, status, attempts FROM dead_letter")
    assert {r[0] for r in dl} == dirty
    for _raw, stage, reasons, status, attempts in dl:
        reasons = reasons if isinstance(reasons, list) else json.loads(reasons)
        assert reasons and stage in ("transform", "quality") and status == "pending" and attempts == 1

    # counts add up, in the run record and in metrics.json
    assert run["extracted"] == run["transformed"] + run["rejected_transform"] + run["duplicates"]
    assert run["transformed"] == run["passed"] + run["rejected_quality"]
    assert run["loaded"] == run["passed"] == len(expected_table(api, since, until))
    report = project.reports / run["run_id"]
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["status"] == "succeeded"
    for k in (
        "extracted",
        "transformed",
        "rejected_transform",
        "duplicates",
        "passed",
        "rejected_quality",
        "loaded",
    ):
        assert metrics["counts"][k] == run[k]
    assert set(metrics["stage_seconds"]) == {"extract", "transform_quality", "load"}

    # three executed notebooks are the audit log; no secret in anything written
    names = sorted(p.name for p in report.glob("*.ipynb"))
    assert names == ["01_extract.ipynb", "02_transform_quality.ipynb", "03_load.ipynb"]
    for nb_path in report.glob("*.ipynb"):
        nb = nbformat.read(str(nb_path), as_version=4)
        assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    for path in [*project.reports.rglob("*"), *project.runs.rglob("*")]:
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes(), path
    watermark = query(project.database_url, "SELECT watermark FROM pipeline_state")
    assert len(watermark) == 1


@pytest.mark.parametrize("workers, used", [("1", 0), ("3", 2)])
def test_chunk_boundaries_change_nothing(project, api, clock, workers, used):
    """Chunks of 20 items (pages of 10): duplicates are superseded across chunks (last one wins), and a dirty
    record sent again in another chunk is one dead letter. The table must be exactly the generator's, with
    the chunks parsed in the kernel alone and in the kernel and two worker processes, which start during the
    extract and prepare its first parts while it fetches the rest (``core.ahead``)."""
    dirty = {"user_id": None, "event": "click", "timestamp": "2024-05-01T00:00:00Z"}
    api.data.append(dirty, clock.now - timedelta(hours=3))
    api.data.append(dirty, clock.now - timedelta(hours=1))
    args = ("-p", "load.batch_size=20", "-p", "api.per_page=10", "-p", f"runner.transform_workers={workers}")
    assert project.cli("run", *args) == 0
    run = last_run(project.database_url)
    metrics = json.loads((project.reports / run["run_id"] / "metrics.json").read_text())
    assert metrics["stages"]["transform_quality"]["workers"] == used
    assert (metrics["stages"]["transform_quality"]["parts_prepared_ahead"] > 0) is (used > 0)
    since, until = run["window_since"], run["window_until"]
    clean_copies = sum(g.truth is not None for g in api.data.events(since, until))
    assert run["duplicates"] == clean_copies - len(api.data.expected_rows(since, until)) > 0
    assert table_rows(project.database_url) == expected_table(api, since, until)
    expected_dirty = {g.body.decode() for g in api.data.events(since, until) if g.truth is None}
    dl = query(project.database_url, "SELECT raw, attempts FROM dead_letter")
    assert sorted(r[0] for r in dl) == sorted(expected_dirty)  # each distinct dirty record exactly once,
    assert {r[1] for r in dl} == {1}  # and seen once in this run, however many chunks carried it
    assert run["extracted"] == run["transformed"] + run["rejected_transform"] + run["duplicates"]


def test_full_run_over_unchanged_data_changes_nothing(project, api, clock):
    # a source that stopped changing a minute ago
    api.data.config = replace(api.data.config, end=clock.now - timedelta(minutes=1))
    assert project.cli("run") == 0
    first = table_rows(project.database_url)
    first_run = last_run(project.database_url)["run_id"]
    assert project.cli("run", "--full", "-p", "quality.min_timestamp=2024-01-01") == 0
    run = last_run(project.database_url)
    assert run["kind"] == "full" and run["loaded"] == len(first)
    assert table_rows(project.database_url) == first
    # unchanged rows keep their lineage: nothing was rewritten
    assert query(project.database_url, "SELECT DISTINCT run_id FROM analytics") == [(first_run,)]
    assert query(project.database_url, "SELECT count(*) FROM dead_letter WHERE attempts = 2")[0][0] > 0
    metrics = json.loads((project.reports / run["run_id"] / "metrics.json").read_text())
    assert metrics["counts"]["unchanged"] == len(first) and metrics["counts"]["inserted"] == 0


def test_quality_gate_failure_loads_nothing(project, api):
    code = project.cli("run", "-p", "quality.allowed_events=click")
    assert code == 1
    run = last_run(project.database_url)
    assert run["status"] == "failed" and run["failure_class"] == "cell error"
    assert "QualityGateFailed" in run["error"]
    assert query(project.database_url, "SELECT count(*) FROM analytics")[0][0] == 0
    assert query(project.database_url, "SELECT count(*) FROM dead_letter")[0][0] == 0
    assert query(project.database_url, "SELECT count(*) FROM pipeline_state")[0][0] == 0
    failed_nb = project.reports / run["run_id"] / "02_transform_quality.ipynb"
    top = nbformat.read(str(failed_nb), as_version=4).cells[0]
    assert "FAILED in stage <code>transform_quality</code>" in top.source


def test_status_shows_runs_and_dead_letters_as_json(project, api, capsys):
    assert project.cli("run") == 0
    capsys.readouterr()
    assert project.cli("status", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["runs"][0]["status"] == "succeeded"
    assert data["watermark"]
    assert data["dead_letters"]["pending"] > 0
    assert data["dead_letters"]["pending_by_stage_reason"]


def test_run_demo_gives_each_notebook_the_runs_settings_file(project, monkeypatch):
    """``run --demo`` serves its API from the CLI's process; the notebooks find it in the run's resolved settings
    file, not in their environment (which names an API that is not there)."""
    monkeypatch.setenv("API_BASE_URL", "http://127.0.0.1:9")
    since = NOW.replace(minute=0) - timedelta(hours=2)
    args = ("-p", f"window.initial_since={since:%Y-%m-%dT%H:%M:%SZ}", "-p", "runner.keep_runs=true")
    assert project.cli("run", "--demo", *args) == 0
    run = last_run(project.database_url)
    assert run["status"] == "succeeded" and run["loaded"] > 0
    path = project.runs / run["run_id"] / "settings.json"
    resolved = json.loads(path.read_text())
    assert resolved["settings"]["api.base_url"].startswith("http://127.0.0.1:")
    assert resolved["settings"]["api.base_url"] != "http://127.0.0.1:9"
    assert (resolved["run_id"], resolved["kind"], resolved["advance_watermark"]) == (
        run["run_id"],
        "incremental",
        True,
    )
    assert parse_instant(resolved["since"]) == run["window_since"] == since
    assert parse_instant(resolved["until"]) == run["window_until"]
    assert DEMO_KEY not in path.read_text() and API_KEY not in path.read_text()
    for nb_path in (project.reports / run["run_id"]).glob("*.ipynb"):
        nb = nbformat.read(str(nb_path), as_version=4)
        assert nb.metadata.papermill.parameters == {"settings_file": str(path)}


def test_papermill_runs_a_notebook_with_date_parameters(tmp_path):
    out = tmp_path / "out.ipynb"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(ROOT / "notebooks" / "01_extract.ipynb"),
            str(out),
            "-p",
            "since",
            "2024-05-01",
            "-p",
            "until",
            "2024-05-02",
            "-p",
            "run_id",
            "123",
            "-p",
            "run_dir",
            str(tmp_path / "run"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    import scrapbook as sb

    metrics = sb.read_notebook(str(out)).scraps["metrics"].data
    assert metrics["since"] == "2024-05-01T00:00:00Z" and metrics["until"] == "2024-05-02T00:00:00Z"
    assert metrics["extracted"] > 0
    assert list((tmp_path / "run" / "raw").glob("part-*.parquet"))


def test_papermill_help_lists_parameters_with_types_and_help():
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", "--help-notebook", str(ROOT / "notebooks" / "01_extract.ipynb")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for name in (
        "since",
        "until",
        "run_id",
        "run_dir",
        "params_file",
        "overrides",
        "scratch",
        "settings_file",
    ):
        assert name in proc.stdout
    assert "str" in proc.stdout and "bool" in proc.stdout
    assert "window start, inclusive" in proc.stdout


def test_committed_notebooks_have_no_outputs_and_a_parameters_cell():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        assert nb.cells[0].cell_type == "markdown"
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), path
        assert all(
            not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code"
        )


def test_hostile_values_are_stored_byte_for_byte(project, api, clock):
    from eventpipe.demo.data import Truth

    at = clock.now - timedelta(minutes=30)
    nested: dict = {"leaf": "end"}
    for i in range(50):
        nested = {f"level{i}": nested}
    hostile = [
        ("quote\"'s", {"q": "he said \"hi\" and 'bye'"}),
        ("x'); DROP TABLE analytics;--", {"sql": "1; DELETE FROM dead_letter"}),
        ("emoji-🎉-user", {"emoji": "café ☕ 🎉", "rtl": "שלום"}),
        ("big-" + "x" * 100_000, {"big": "y" * 100_000}),
        ("nested", nested),
        ("back\\slash", {"path": "C:\\u0000x"}),
    ]
    for i, (user, props) in enumerate(hostile):
        t = at + timedelta(seconds=i)
        api.data.append(
            {"user_id": user, "event": "click", "timestamp": t.isoformat(), "properties": props},
            t,
            Truth(user, round(t.timestamp() * 1000), "click", props, None),
        )
    api.data.append({"user_id": "nul\u0000user", "event": "click", "timestamp": at.isoformat()}, at)
    api.data.append(
        {"user_id": "ok", "event": "click", "timestamp": at.isoformat(), "properties": {"nul": "a\u0000b"}},
        at,
    )
    assert project.cli("run") == 0
    rows = table_rows(project.database_url)
    for i, (user, props) in enumerate(hostile):
        key = (user, round((at + timedelta(seconds=i)).timestamp() * 1000), "click")
        assert rows[key][0] == props
    raws = [r[0] for r in query(project.database_url, "SELECT raw, reasons FROM dead_letter")]
    assert any("nul\\u0000user" in r for r in raws) and any("a\\u0000b" in r for r in raws)
    r = last_run(project.database_url)
    assert table_rows(project.database_url) == expected_table(api, r["window_since"], r["window_until"])
