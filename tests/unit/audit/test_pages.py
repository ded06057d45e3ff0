"""The audit pages render run data as text: charts, the failure banner, the index and run pages."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from eventpipe.audit import charts, index
from eventpipe.audit.ledger import verify_run
from eventpipe.audit.metrics_export import lineage_clients, lineage_event, write_prom
from eventpipe.audit.notebook_html import failure_banner
from eventpipe.core.run_metrics import RunMetrics

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)></td>\"'"


class Tags(HTMLParser):
    """Every start tag and attribute name a browser would see."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [a for a, _ in attrs]


def _parse(markup: str) -> Tags:
    p = Tags()
    p.feed(markup)
    return p


def test_charts_escape_labels_and_pick_hours_or_days():
    svg = charts.bar_chart([(HOSTILE, 3), ("ok", 5)], HOSTILE)
    tags = _parse(svg)
    assert "script" not in tags.tags and "img" not in tags.tags and "onerror" not in tags.attrs
    assert "&lt;script&gt;" in svg
    hours = {f"2024-05-01T{h:02d}:00:00Z": h for h in range(24)}
    assert charts.events_over_time(hours)[2] == "hour"
    days = {f"2024-05-{d:02d}T00:00:00Z": 1 for d in range(1, 11)}
    labels, values, unit = charts.events_over_time(days)
    assert unit == "day" and labels[0] == "2024-05-01" and sum(values) == 10


def test_the_failure_banner_escapes_the_error_detail():
    md = failure_banner("transform_quality", "cell error", f"ValueError: {HOSTILE}\nsecond line")
    tags = _parse(md)
    assert tags.tags.count("div") == 1 and "script" not in tags.tags and "img" not in tags.tags
    assert "&lt;img src=x onerror=alert(2)&gt;" in md and "second line" in md


def _run_folder(tmp_path: Path, rid: str, status: str, **extra) -> Path:
    folder = tmp_path / rid
    folder.mkdir()
    m = {
        "run_id": rid,
        "kind": "incremental",
        "status": status,
        "window": {"since": "2026-11-25T00:53:00Z", "until": "2026-12-02T00:53:00Z"},
        "counts": {
            "extracted": 10,
            "rejected_transform": 1,
            "duplicates": 1,
            "transformed": 8,
            "passed": 7,
            "rejected_quality": 1,
            "loaded": 7,
            "inserted": 7,
            "updated": 0,
            "unchanged": 0,
        },
        "pass_rate": 0.875,
        "duration_s": 1.5,
        "stages": {"transform_quality": {"reasons": {HOSTILE: 2}, "per_hour": {"2026-11-25T01:00:00Z": 7}}},
        "ledger": {"code": {"git_commit": "a" * 40, "dirty": True}, "params": {"x": HOSTILE}},
        **extra,
    }
    (folder / "metrics.json").write_text(json.dumps(m))
    (folder / "01_extract.ipynb").write_text("{}")
    return folder


def test_index_and_run_pages_show_hostile_run_data_as_text(tmp_path):
    _run_folder(tmp_path, "20261202T000000-incremental-aaaaaa", "succeeded")
    _run_folder(
        tmp_path,
        "20261202T010000-incremental-bbbbbb",
        "failed",
        error={"stage": "load", "class": "cell error", "detail": HOSTILE},
    )
    runs = index.read_runs(tmp_path)
    assert [r.run_id[-6:] for r in runs] == ["bbbbbb", "aaaaaa"]  # newest first
    for r in runs:
        index.write_run_page(r)
    page = index.write_index(tmp_path).read_text()
    for markup in (page, (tmp_path / runs[0].run_id / "run.html").read_text()):
        tags = _parse(markup)
        assert tags.tags.count("script") <= 1 and "img" not in tags.tags and "onerror" not in tags.attrs
        assert "nonce-" in markup and "https://" not in markup.split("<body>", 1)[1]
    assert 'data-status="failed"' in page and "a" * 7 + "*" in page and "with uncommitted changes" in page
    assert '<span class="nowrap">11-25 00:53</span> → <span class="nowrap">12-02 00:53</span>' in page
    run_page = (tmp_path / runs[0].run_id / "run.html").read_text()
    assert 'id="failure-banner"' in run_page and "✓ holds" in run_page and run_page.count("<svg") == 2


def test_count_identity_is_written_out_and_checked():
    ok = index.count_identity(
        {
            "extracted": 10,
            "transformed": 8,
            "rejected_transform": 1,
            "duplicates": 1,
            "passed": 7,
            "rejected_quality": 1,
            "loaded": 7,
        }
    )
    assert [holds for _, holds in ok] == [True, True, True]
    bad = index.count_identity({"extracted": 11, "transformed": 8, "rejected_transform": 1, "duplicates": 1})
    assert bad[0][1] is False and "extracted 11 = transformed 8" in bad[0][0]


def test_verify_names_edited_deleted_and_added_reports(tmp_path):
    from eventpipe.audit.ledger import report_hashes

    (tmp_path / "01_extract.ipynb").write_text("a")
    (tmp_path / "01_extract.html").write_text("b")
    (tmp_path / "run.html").write_text("derived page, not a report")
    recorded = report_hashes(tmp_path)
    assert set(recorded) == {"01_extract.ipynb", "01_extract.html"}
    assert verify_run("r", tmp_path, recorded) == []
    (tmp_path / "01_extract.ipynb").write_text("changed")
    (tmp_path / "01_extract.html").unlink()
    (tmp_path / "02_transform_quality.ipynb").write_text("new")
    problems = {f.report: f.problem for f in verify_run("r", tmp_path, recorded)}
    assert problems["01_extract.ipynb"].startswith("edited") and problems["01_extract.html"] == "deleted"
    assert problems["02_transform_quality.ipynb"].startswith("added")
    assert "no ledger" in verify_run("r", tmp_path, None)[0].problem


def test_prometheus_textfile_for_a_failed_run(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    path = write_prom(
        RunMetrics.from_json(
            {
                "run_id": "r1",
                "kind": "backfill",
                "status": "failed",
                "counts": {"extracted": 5},
                "stage_seconds": {"extract": 1.0},
                "duration_s": 2.0,
                "finished_at": "2026-12-02T00:00:00Z",
            }
        ),
        tmp_path / "metrics.prom",
        last_success=1700000000.0,
    )
    fams = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    assert {s.labels["status"]: s.value for s in fams["eventpipe_run_status"].samples}["failed"] == 1.0
    assert fams["eventpipe_last_success_timestamp_seconds"].samples[0].value == 1700000000.0
    assert "eventpipe_run_pass_rate" not in fams  # no pass rate before the transform ran
    assert {s.labels["count"] for s in fams["eventpipe_run_records"].samples} == {"extracted"}
    assert list(tmp_path.iterdir()) == [path]  # written by rename: no temporary file left


def test_openlineage_events_go_to_the_file_with_input_api_and_output_table(tmp_path):
    path = tmp_path / "ol" / "events.jsonl"
    (client,) = lineage_clients("", str(path))
    run_id = "20261202T000000-incremental-abcdef"
    for event in ("START", "COMPLETE"):
        client.emit(
            lineage_event(
                event,
                run_id,
                "incremental",
                "https://user:pw@api.example.com:8443/analytics",
                "analytics",
                "ns",
            )
        )
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert events[0]["inputs"][0] == {
        "namespace": "https://api.example.com:8443",
        "name": "/analytics",
        "facets": {},
        "inputFacets": {},
    }
    assert (
        events[0]["outputs"][0]["name"] == "analytics" and events[0]["job"]["name"] == "eventpipe.incremental"
    )
    assert "pw" not in path.read_text()
    assert lineage_clients("", "") == []


def test_openlineage_events_are_posted_to_the_http_endpoint():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[tuple[str, dict]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the base class's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body)))
            self.send_response(201)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (client,) = lineage_clients(f"http://127.0.0.1:{server.server_address[1]}", "")
        client.emit(lineage_event("FAIL", "r", "backfill", "http://api/analytics", "analytics", "ns"))
    finally:
        server.shutdown()
        server.server_close()
    assert [(path, e["eventType"]) for path, e in received] == [("/api/v1/lineage", "FAIL")]


def test_count_identity_checks_only_the_sums_a_run_reached():
    assert index.count_identity({"extracted": 5}) == []  # stopped after the extract
    [line] = index.count_identity({"extracted": 5, "transformed": 3, "duplicates": 1, "outside_window": 1})
    assert line == ("extracted 5 = transformed 3 + duplicates 1 + outside the window 1", True)
    load = index.count_identity({"loaded": 7, "passed": 7, "inserted": 5, "updated": 1, "unchanged": 0})
    assert load[-1] == ("loaded 7 = passed 7 = inserted 5 + updated 1 + unchanged 0", False)


def test_the_index_names_each_way_a_record_leaves_a_run_in_its_rejected_cell(tmp_path):
    """The index keeps to read / rejected / loaded (as ``status`` does) so that a row fits; each way a record
    left before the load is in the rejected cell's tooltip, and every count is on the run's page."""
    counts = {
        "extracted": 11,
        "rejected_transform": 1,
        "duplicates": 1,
        "outside_window": 1,
        "rejected_quality": 1,
    }
    _run_folder(tmp_path, "20261202T000000-incremental-aaaaaa", "succeeded", counts=counts)
    page = index.write_index(tmp_path).read_text()
    assert '<th class="num">extracted</th><th class="num">rejected</th><th class="num">loaded</th>' in page
    cell = page.split('data-label="rejected"', 1)[1].split("</td>", 1)[0]
    assert "outside the window" in cell and "rejected (quality)" in cell and "duplicates" in cell


def test_the_index_charts_lateness_only_when_the_runs_metrics_carry_it(tmp_path):
    _run_folder(tmp_path, "20261202T000000-incremental-aaaaaa", "succeeded")
    page = index.write_index(tmp_path).read_text()
    assert "records extracted per run" in page and "pass rate per run" in page and "late rows" not in page
    late = {
        "measure": "arrival",
        "late_rows": 12,
        "lag_p50_s": 60.0,
        "lag_p99_s": 3000.0,
        "lag_max_s": 7200.0,
    }
    _run_folder(tmp_path, "20261202T010000-incremental-bbbbbb", "succeeded", lateness=late)
    page = index.write_index(tmp_path).read_text()
    assert "late rows per run" in page and "latest late arrival per run (minutes)" in page
    assert "12 rows" in page and "120.0 min" in page  # the bars' tooltips: the count, lag_max_s in minutes


def test_the_grid_shows_where_a_failed_run_stopped(tmp_path):
    error = {"stage": "transform_quality", "class": "cell error", "detail": "QualityGateFailed: x"}
    _run_folder(
        tmp_path,
        "20261202T010000-incremental-bbbbbb",
        "failed",
        error=error,
        stage_seconds={"extract": 1.0, "transform_quality": 2.0},
    )
    (run,) = index.read_runs(tmp_path)
    assert run.stage_states() == {"extract": "succeeded", "transform_quality": "failed", "load": "none"}
    page = index.write_index(tmp_path).read_text()
    grid = page.split('id="grid"', 1)[1].split("</table>", 1)[0]
    assert grid.count('class="sq st-failed"') == 1 and grid.count('class="sq st-none"') == 1


def test_the_gate_s_checks_become_openlineage_assertions():
    from eventpipe.audit.metrics_export import quality_assertions
    from eventpipe.settings import QualitySettings

    transform = {
        "pass_rate": 0.5,
        "min_pass_rate": 0.95,
        "reasons": {"event_not_allowed": 3, "user_id_missing": 2},
    }
    out = {a["assertion"]: a for a in quality_assertions(transform, QualitySettings())}
    assert out["event_not_allowed"] == {
        "assertion": "event_not_allowed",
        "success": False,
        "column": "event_type",
        "severity": "error",
        "description": "event type is in quality.allowed_events",
        "expected": "0",
        "actual": "3",
    }
    assert (
        out["timestamp_in_future"]["success"] is True and out["timestamp_in_future"]["column"] == "timestamp"
    )
    assert out["user_id_missing"]["column"] == "user_id" and out["user_id_missing"]["actual"] == "2"
    assert out["pass_rate"]["success"] is False and out["pass_rate"]["expected"] == ">= 0.95"
    assert quality_assertions({}, QualitySettings()) == []  # the run stopped before the transform
    event = lineage_event(
        "FAIL", "r", "incremental", "http://api/analytics", "analytics", "ns", assertions=list(out.values())
    )
    from openlineage.client.serde import Serde

    facet = json.loads(Serde.to_json(event))["inputs"][0]["inputFacets"]["dataQualityAssertions"]
    assert [a["assertion"] for a in facet["assertions"]][-1] == "pass_rate"


def _notebook(path: Path, text: str) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[])])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text=text)]
    nbformat.write(nb, str(path))
    return path


def test_html_rendered_ahead_is_the_page_finish_writes_unless_the_notebook_changed(tmp_path):
    from eventpipe.audit.build import HtmlAhead, write_notebook_html

    run = tmp_path / "run-1"
    run.mkdir()
    first = _notebook(run / "01_extract.ipynb", "extracted 10")
    second = _notebook(run / "02_transform_quality.ipynb", "clean 9")
    broken = run / "03_load.ipynb"
    broken.write_text("{half written")
    ahead = HtmlAhead(with_code=False)
    for nb in (first, second, broken):
        ahead.submit(nb)
    _notebook(second, "clean 8")  # same size, changed after it was handed over: rendered again
    written = write_notebook_html(run, ahead=ahead)

    assert [p.name for p in written] == ["01_extract.html", "02_transform_quality.html"]  # broken: skipped
    assert "clean 8" in (run / "02_transform_quality.html").read_text()
    plain = tmp_path / "plain" / "run-1"
    plain.mkdir(parents=True)
    for nb in (first, second):
        (plain / nb.name).write_bytes(nb.read_bytes())
    write_notebook_html(plain)
    for name in ("01_extract.html", "02_transform_quality.html"):
        assert (run / name).read_text() == (plain / name).read_text()  # the same page, the same title
    assert ahead.page(first, with_code=True) is None  # rendered without code: not the page asked for
