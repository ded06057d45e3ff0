"""The audit trail a run leaves: HTML of each notebook, the ledger, metrics.prom, lineage, the index, verify."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from support import API_KEY, query

NOTEBOOKS = ("01_extract", "02_transform_quality", "03_load")


def _last_run_id(project) -> str:
    return query(project.database_url, "SELECT run_id FROM pipeline_runs ORDER BY started_at DESC LIMIT 1")[
        0
    ][0]


def test_a_run_leaves_html_ledger_metrics_and_index(project, capsys):
    assert project.cli("run") == 0
    run_id = _last_run_id(project)
    folder = project.reports / run_id
    for stem in NOTEBOOKS:
        page = (folder / f"{stem}.html").read_text()
        assert "Content-Security-Policy" in page and "<script" not in page  # no CDN, no script at all
        assert "from_parameters" not in page  # code hidden by default
    metrics = json.loads((folder / "metrics.json").read_text())
    ledger = metrics["ledger"]
    assert ledger["code"].get("git_commit") or ledger["code"].get("package_version")
    assert set(ledger["notebooks_sha256"]) == {f"{s}.ipynb" for s in NOTEBOOKS}
    assert set(ledger["reports_sha256"]) == {f"{s}{ext}" for s in NOTEBOOKS for ext in (".ipynb", ".html")}
    assert ledger["params"]["quality.min_pass_rate"] == 0.95 and len(ledger["params_sha256"]) == 64
    assert ledger["user"] and ledger["host"]
    assert metrics["stages"]["transform_quality"]["per_hour"]  # what the run page's chart is drawn from

    # the same entry in pipeline_runs, and `status --run` shows it
    capsys.readouterr()
    assert project.cli("status", "--run", run_id, "--json") == 0
    entry = json.loads(capsys.readouterr().out)
    assert (
        entry["reports_sha256"] == ledger["reports_sha256"]
        and entry["params_sha256"] == ledger["params_sha256"]
    )
    assert entry["code_version"] and entry["run_user"] == ledger["user"]
    assert project.cli("status", "--run", run_id) == 0
    assert "params_sha256" in capsys.readouterr().out

    # metrics.prom parses as the Prometheus text format
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families((folder / "metrics.prom").read_text())}
    status = {s.labels["status"]: s.value for s in families["eventpipe_run_status"].samples}
    assert status == {"succeeded": 1.0, "failed": 0.0}
    loaded = [s.value for s in families["eventpipe_run_records"].samples if s.labels["count"] == "loaded"]
    assert loaded == [metrics["counts"]["loaded"]]
    assert "eventpipe_last_success_timestamp_seconds" in families

    index = (project.reports / "index.html").read_text()
    assert (
        run_id in index and f"{run_id}/run.html" in index and f"{run_id}/02_transform_quality.html" in index
    )
    assert "https://" not in index.split("<body>", 1)[1]  # nothing loaded from elsewhere
    run_page = (folder / "run.html").read_text()
    assert "<svg" in run_page and "✓ holds" in run_page and "quality.min_pass_rate" in run_page

    # no secret anywhere in what the run wrote
    for path in project.reports.rglob("*"):
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_report_verify_flags_an_edited_or_deleted_report(project, capsys):
    assert project.cli("run") == 0
    run_id = _last_run_id(project)
    folder = project.reports / run_id
    assert project.cli("report", "verify") == 0
    assert project.cli("report", "verify", run_id) == 0
    nb = folder / "02_transform_quality.ipynb"
    nb.write_text(nb.read_text().replace("transform", "tampered", 1))
    (folder / "01_extract.html").unlink()
    capsys.readouterr()
    assert project.cli("report", "verify", run_id) == 1
    out = capsys.readouterr().out
    assert "02_transform_quality.ipynb edited" in out and "01_extract.html deleted" in out
    # metrics.json edited to match the tampered notebook changes nothing: the database's copy is checked
    metrics = json.loads((folder / "metrics.json").read_text())
    from eventpipe.audit.ledger import report_hashes

    metrics["ledger"]["reports_sha256"] = report_hashes(folder)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    assert project.cli("report", "verify", run_id) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_report_rebuild_keeps_code_on_request_and_still_verifies(project, capsys):
    assert project.cli("run") == 0
    run_id = _last_run_id(project)
    folder = project.reports / run_id
    (project.reports / "index.html").unlink()
    assert project.cli("report", run_id, "--with-code") == 0
    assert "from_parameters" in (folder / "01_extract.html").read_text()
    assert (project.reports / "index.html").is_file()
    assert project.cli("report", "verify", run_id) == 0  # rebuilt HTML is re-recorded; notebooks untouched
    assert project.cli("report", "no-such-run") == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_failed_run_has_its_banner_first_and_a_fail_lineage_event(project, tmp_path):
    lineage = tmp_path / "lineage" / "events.jsonl"
    assert project.cli("run", "-p", "quality.min_pass_rate=0.9999", "-p", f"lineage.file={lineage}") == 1
    run_id = _last_run_id(project)
    folder = project.reports / run_id
    page = (folder / "02_transform_quality.html").read_text()
    body = page.split("<body", 1)[1]
    assert body.index("eventpipe-failure") < body.index("02 · Transform")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["counts"]["extracted"] > 0  # the failed gate's counts
    assert metrics["stages"]["transform_quality"]["reasons"]
    run_page = (folder / "run.html").read_text()
    assert 'id="failure-banner"' in run_page and "QualityGateFailed" in run_page
    events = [json.loads(line) for line in lineage.read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    assert events[1]["outputs"][0]["name"] == "analytics" and events[1]["inputs"][0]["name"] == "/analytics"
    assert events[0]["run"]["runId"] == events[1]["run"]["runId"]
    prom = (folder / "metrics.prom").read_text()
    assert f'eventpipe_run_status{{kind="incremental",run_id="{run_id}",status="failed"}} 1.0' in prom


def test_serve_answers_on_loopback_and_refuses_to_leave_the_folder(tmp_path):
    from eventpipe.audit.serve import make_server

    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "index.html").write_text("<p>runs</p>")
    (tmp_path / "secret.txt").write_text("outside")
    server = make_server(reports, 0)
    host, port = server.server_address[:2]
    assert host == "127.0.0.1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{port}"
        assert urllib.request.urlopen(f"{base}/index.html").read() == b"<p>runs</p>"
        for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/a/../../secret.txt"):
            with pytest.raises(urllib.error.HTTPError) as e:
                import http.client

                conn = http.client.HTTPConnection("127.0.0.1", port)
                conn.request("GET", path)
                resp = conn.getresponse()
                if resp.status >= 400:
                    raise urllib.error.HTTPError(path, resp.status, resp.reason, resp.headers, None)
                pytest.fail(f"{path} answered {resp.status}: {resp.read()[:50]!r}")
            assert e.value.code in (403, 404)
    finally:
        server.shutdown()
        server.server_close()
