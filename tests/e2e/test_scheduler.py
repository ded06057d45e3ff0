"""The scheduler runs incremental runs on an interval, never overlapping, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from support import runs


def test_scheduler_runs_ticks_and_stops_on_sigterm(project, api):
    proc = project.spawn("schedule", "--every", "2s")
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                done = [r for r in runs(project.database_url) if r["status"] == "succeeded"]
            except Exception:  # tables not created yet
                done = []
            if len(done) >= 2:
                break
            time.sleep(0.5)
        assert len(done) >= 2, "the scheduler did not complete two runs"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "stopping after the current run" in err
    assert "scheduler stopped after" in err
    all_runs = runs(project.database_url)
    assert all(r["status"] == "succeeded" for r in all_runs)  # the last one was allowed to finish
    # never overlapping: each run started after the previous one finished
    from support import query

    spans = query(
        project.database_url, "SELECT started_at, finished_at FROM pipeline_runs ORDER BY started_at"
    )
    for (_s1, f1), (s2, _f2) in zip(spans, spans[1:]):
        assert f1 is not None and str(s2) >= str(f1)


def _home(project, pipelines: dict[str, dict]) -> dict[str, str]:
    """A project home of the test's own (``EVENTPIPE_HOME``): the notebooks and ``run_pipeline.py`` of this
    checkout, and a ``params/pipelines/`` holding ``pipelines``."""
    import yaml

    from support import ROOT

    home = project.root / "home"
    (home / "params" / "pipelines").mkdir(parents=True)
    for name in ("notebooks", "run_pipeline.py"):
        (home / name).symlink_to(ROOT / name)
    for name, sections in pipelines.items():
        (home / "params" / "pipelines" / f"{name}.yaml").write_text(yaml.safe_dump(sections))
    return {"EVENTPIPE_HOME": str(home)}


def test_each_pipeline_runs_on_its_own_schedule_side_by_side_never_overlapping_itself(
    project, api, capsys, monkeypatch
):
    """``schedule --all``: web every 2s and backend every 3s, real runs against two demo API styles. A
    pipeline's runs never overlap each other; the two pipelines' runs do overlap in time."""
    import yaml

    from eventpipe.demo.data import DemoConfig
    from eventpipe.settings import pipelines
    from support import HOUR, NOW, ROOT, query, start_api

    now = NOW.replace(minute=0)
    backend_api = start_api(
        DemoConfig(start=now - 6 * HOUR, events_per_hour=40, seed=7, end=now), style="json-server"
    )
    backend = yaml.safe_load((ROOT / "params" / "sources" / "json-server.yaml").read_text())
    backend["api"]["base_url"] = backend_api.url
    backend.update(quality={"min_pass_rate": 0.8}, schedule={"every": "3s"})
    web = {"api": {"base_url": api.url}, "quality": {"min_pass_rate": 0.8}, "schedule": {"every": "2s"}}
    env = _home(project, {"web": web, "backend": backend})
    # its output to a file: two pipelines' runs write more than a pipe holds while the test polls
    output = project.root / "schedule.out"
    with output.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "run_pipeline.py"), *project._argv(("schedule", "--all"))],
            env={**os.environ, **env},
            start_new_session=True,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 420
        done: dict[str, int] = {}
        while time.monotonic() < deadline:
            try:
                done = dict(
                    query(
                        project.database_url,
                        "SELECT pipeline, count(*) FROM pipeline_runs WHERE status = 'succeeded' GROUP BY pipeline",
                    )
                )
            except Exception:  # tables not created yet
                done = {}
            if done.get("web", 0) >= 2 and done.get("backend", 0) >= 2:
                break
            time.sleep(0.5)
        assert done.get("web", 0) >= 2 and done.get("backend", 0) >= 2, done
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        backend_api.server.stop()
    err = output.read_text()
    assert proc.returncode == 0, err[-3000:]
    assert "scheduler: pipeline backend every 3s" in err and "scheduler: pipeline web every 2s" in err
    assert "scheduler stopped after" in err
    spans = {
        p: [
            (str(s), str(f), status)
            for s, f, status in query(
                project.database_url,
                "SELECT started_at, finished_at, status FROM pipeline_runs "
                f"WHERE pipeline = '{p}' ORDER BY started_at",
            )
        ]
        for p in ("web", "backend")
    }
    assert query(project.database_url, "SELECT count(*) FROM pipeline_runs WHERE pipeline = 'default'") == [
        (0,)
    ]
    for runs_of_one in spans.values():
        assert all(status == "succeeded" for _, _, status in runs_of_one)  # the last ones were let finish
        for (_s1, f1, _), (s2, _f2, _) in zip(runs_of_one, runs_of_one[1:]):
            assert s2 >= f1  # one pipeline: each run starts after its previous one finished
    assert any(s1 < f2 and s2 < f1 for s1, f1, _ in spans["web"] for s2, f2, _ in spans["backend"]), (
        spans
    )  # two pipelines: side by side

    # status: a line per pipeline at 80 columns, and no "default" that nobody runs
    monkeypatch.setattr(pipelines, "PIPELINES_DIR", project.root / "home" / "params" / "pipelines")
    monkeypatch.setattr(pipelines, "DEFAULT_PARAMS", project.root / "no-default.yaml")
    capsys.readouterr()
    assert project.cli("status") == 0
    shown = capsys.readouterr().out
    print(shown)
    lines = shown.splitlines()
    assert all(len(line) <= 80 for line in lines), shown
    rows = {line.split()[0]: line.split() for line in lines if line.split()[:1] in (["web"], ["backend"])}
    assert set(rows) == {"web", "backend"} and not any(line.startswith("default") for line in lines)
    assert rows["web"][-1] == "ok" and rows["backend"][-1] == "ok"
    assert "status --pipeline NAME" in shown
