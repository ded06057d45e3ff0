"""A failed run explains itself, in a real browser: the stage's reasons and a clean message (no traceback),
a run page that starts with what was set for the run, and the same counts on the page as in ``status``."""

from __future__ import annotations

import json
import re

import pytest

from support import query

GATE = ("-p", "window.overlap=8h", "-p", "quality.min_pass_rate=0.9999")


def _failed_run(project) -> str:
    assert project.cli("run", *GATE) == 1
    rows = query(project.database_url, "SELECT run_id FROM pipeline_runs WHERE status = 'failed'")
    assert len(rows) == 1
    return rows[0][0]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_failed_gate_shows_its_reasons_and_a_clean_message_and_the_page_starts_with_the_overrides(
    project, page, capsys
):
    rid = _failed_run(project)
    folder = project.reports / rid
    reasons = json.loads((folder / "metrics.json").read_text())["stages"]["transform_quality"]["reasons"]
    assert reasons  # the demo data has dirty records: the gate failed on real reasons

    page.goto((folder / "02_transform_quality.html").as_uri())
    text = page.inner_text("body")
    for reason in reasons:  # the reasons table was drawn before the gate raised
        assert reason in text
    assert "Traceback" not in text and "An Exception was encountered" not in text
    assert "quality.py" not in text and "stages.py" not in text
    stop = page.locator(".eventpipe-stop")
    assert stop.count() == 1 and "quality gate failed" in stop.inner_text()
    assert "QualityGateFailed" in stop.inner_text()
    # nothing after the cell the stage stopped in: no bare headings of cells that never ran
    assert page.locator(".jp-Cell").last.inner_text() == page.locator(".jp-Cell", has=stop).inner_text()

    page.goto((folder / "run.html").as_uri())
    changed = page.locator("#changed")
    assert changed.is_visible()
    assert changed.bounding_box()["y"] < page.locator("text=window (UTC)").bounding_box()["y"]
    row = changed.locator("tr", has=page.locator("th", has_text="quality.min_pass_rate"))
    assert "0.9999" in row.inner_text() and "0.95" in row.inner_text() and "-p" in row.inner_text()
    assert changed.locator("tr").count() <= 8  # the changes, not every parameter
    code = page.locator("#settings").inner_text()
    assert re.search(r"Code: git commit [0-9a-f]{12}|Code: eventpipe ", code), code
    assert "{" not in code  # not the raw JSON

    # status shows the counts the page shows
    page_counts = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll("h2 + table tr")]
            .filter(tr => tr.closest("table").previousElementSibling.textContent === "Counts")
            .map(tr => [tr.querySelector("th").textContent, tr.querySelector("td").textContent]))"""
    )
    assert page_counts.get("extracted"), page_counts
    capsys.readouterr()
    assert project.cli("status") == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith(rid.rsplit("-", 1)[-1]))
    assert page_counts["extracted"] in line.split(), (page_counts, line)
    metrics = json.loads((folder / "metrics.json").read_text())
    rejected = metrics["counts"]["rejected_transform"] + metrics["counts"]["rejected_quality"]
    assert f"{rejected:,}" in line.split() and f"{metrics['pass_rate']:.1%}" in line.split(), line


def test_a_bug_keeps_its_traceback(tmp_path):
    """A failure the pipeline did not raise on purpose stays a traceback: that is what a developer needs."""
    import nbformat

    from eventpipe.audit.notebook_html import notebook_to_html
    from eventpipe.orchestration.failures import stamp_failure

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1/0")
    cell.outputs = [
        nbformat.v4.new_output(
            "error",
            ename="ZeroDivisionError",
            evalue="division by zero",
            traceback=["Traceback (most recent call last):", '  File "x.py", line 1', "ZeroDivisionError"],
        )
    ]
    nb.cells = [cell, nbformat.v4.new_markdown_cell("## never ran")]
    path = tmp_path / "02_transform_quality.ipynb"
    nbformat.write(nb, str(path))
    stamp_failure(path, "transform_quality", "cell error", "ZeroDivisionError: division by zero")
    html = notebook_to_html(path).read_text()
    assert "Traceback (most recent call last)" in html and 'class="eventpipe-stop"' not in html
    assert "never ran" not in html
