"""``reports/index.html`` read in a real browser at a desktop's and a phone's width: a row per run that fits,
the grid of runs × stages, totals by status, charts across runs, the failure's first line in full, and the
filter by pipeline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from support import query

WIDTHS = (1280, 390)


def _screens(page, name: str, tmp_path: Path) -> None:
    """Screenshots beside the test; also into ``EVENTPIPE_SCREENS`` when that names a folder."""
    page.screenshot(path=str(tmp_path / name), full_page=True)
    if os.environ.get("EVENTPIPE_SCREENS"):
        page.screenshot(path=str(Path(os.environ["EVENTPIPE_SCREENS"]) / name), full_page=True)


def _fits(page) -> None:
    """The page never scrolls sideways (wide tables scroll in their own box) and each run id is one line."""
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], width
    lines = page.evaluate(
        "() => [...document.querySelectorAll('#runs .run-id')].filter(e => e.offsetParent)"
        ".map(e => e.getClientRects().length)"
    )
    assert lines and set(lines) == {1}, lines


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_index_fits_a_desktop_and_a_phone_shows_the_grid_totals_and_charts_and_filters_by_pipeline(
    project, page, tmp_path
):
    assert project.cli("run") == 0
    assert project.cli("run", "-p", "pipeline.name=web", "-p", "pipeline.table=web_events") == 0
    assert project.cli("run", "-p", "window.overlap=8h", "-p", "quality.min_pass_rate=0.9999") == 1
    rows = query(
        project.database_url, "SELECT run_id, status, pipeline FROM pipeline_runs ORDER BY started_at"
    )
    failed = next(rid for rid, status, _ in rows if status == "failed")
    web = next(rid for rid, _, pipeline in rows if pipeline == "web")
    detail = json.loads((project.reports / failed / "metrics.json").read_text())["error"]["detail"]
    first_line = detail.splitlines()[0]
    assert len(first_line) > 160  # longer than the index used to show

    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto((project.reports / "index.html").as_uri())
        _fits(page)
        assert page.locator("#runs tbody tr").count() == 3
        assert page.locator("#grid .sq").count() == 3 * 3  # three runs, three stages
        assert page.locator("#totals").inner_text().split(" · ") == ["succeeded 2", "failed 1"]
        assert page.locator(".charts svg").count() == 3  # volume, loaded rows, pass rate
        _screens(page, f"index-{width}.png", tmp_path)

    # the failed run: red in transform_quality, load never ran, its failure's first line whole on expand
    grid = page.locator(f'#grid td[data-run="{failed}"] .sq')
    assert [grid.nth(i).get_attribute("class") for i in range(3)] == [
        "sq st-succeeded",
        "sq st-failed",
        "sq st-none",
    ]
    row = page.locator(f'#runs tr[data-run="{failed}"]')
    assert row.locator(".run-id").inner_text() == failed.rsplit("-", 1)[-1]
    assert row.locator("td").nth(1).inner_text()[:2] == "20"  # the start time, a column of its own
    assert row.locator("details").get_attribute("title") == first_line
    row.locator("summary").click()
    assert row.locator(".full").inner_text() == first_line
    _fits(page)

    # the filter by pipeline: the table, the grid and the totals follow it
    page.select_option("#f-pipeline", "web")
    assert page.locator("#runs tbody tr:not([hidden])").count() == 1
    assert page.locator(f'#runs tr[data-run="{web}"]').is_visible()
    assert page.locator("#grid td[data-run]:not([hidden]) .sq").count() == 3
    assert page.locator("#shown").inner_text() == "1"
    assert page.locator("#totals").inner_text().split(" · ") == ["succeeded 1", "failed 0"]
    page.select_option("#f-pipeline", "default")
    assert page.locator("#runs tbody tr:not([hidden])").count() == 2
    assert not page.locator(f'#runs tr[data-run="{web}"]').is_visible()
    page.select_option("#f-pipeline", "")
    _fits(page)

    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto((project.reports / failed / "run.html").as_uri())
    _screens(page, "run-failed.png", tmp_path)
