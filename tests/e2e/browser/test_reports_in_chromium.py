"""The reports an auditor opens from disk, in a real browser: filters, the failure banner, hostile data."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from support import query

# every way event data could try to become live markup: tags, a cell break, quotes inside attributes
HOSTILE = [
    "<script>window.__xss=1;alert('script')</script>",
    "<img src=x onerror=\"window.__xss=2;alert('img')\">",
    '</td></tr></table><b id="injected">broken out</b>',
    '" onmouseover="window.__xss=3" data-x="',
    "' autofocus onfocus='window.__xss=4' x='",
]


def _hostile_events(api) -> None:
    from eventpipe.demo.data import Truth

    first = api.data.config.start + timedelta(seconds=1)  # the very first events: they lead every sample
    for i, text in enumerate(HOSTILE):
        t = first + timedelta(milliseconds=i)
        props = {"note": text, "nested": {"html": text}}
        api.data.append(
            {"user_id": text, "event": "click", "timestamp": t.isoformat(), "properties": props},
            t,
            Truth(text, round(t.timestamp() * 1000), "click", props, None),
        )
        api.data.append({"user_id": f"bad-{i}", "event": text, "timestamp": t.isoformat()}, t)  # rejected


def _run_ids(project) -> dict[str, str]:
    rows = query(project.database_url, "SELECT run_id, status FROM pipeline_runs ORDER BY started_at")
    return {status: rid for rid, status in rows}


def _forged_run(project, template_id: str) -> str:
    """A run folder whose metrics carry hostile text where the pages show run data (error, reasons, params)."""
    rid = "20200101T000000-backfill-f0f0f0"
    src = project.reports / template_id
    dst = project.reports / rid
    dst.mkdir()
    m = json.loads((src / "metrics.json").read_text())
    m.update(run_id=rid, kind="backfill", status="failed", started_at="2020-01-01T00:00:00Z")
    m["error"] = {"stage": HOSTILE[0], "class": HOSTILE[3], "detail": " ".join(HOSTILE)}
    m["stages"]["transform_quality"]["reasons"] = {t: i + 1 for i, t in enumerate(HOSTILE)}
    m["stages"]["transform_quality"]["per_hour"] = {"2020-01-01T00:00:00Z": 3}
    m["ledger"]["params"]["overrides"] = HOSTILE
    (dst / "metrics.json").write_text(json.dumps(m))
    return rid


def _assert_inert(page) -> None:
    assert page.dialogs == []
    assert page.evaluate("window.__xss === undefined")
    assert page.locator("#injected").count() == 0
    assert page.locator('img[src="x"]').count() == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_index_filters_to_a_failed_run_whose_page_and_report_open_with_the_banner_and_run_no_script(
    project, api, page, tmp_path
):
    _hostile_events(api)
    assert project.cli("run") == 0
    assert project.cli("run", "-p", "window.overlap=8h", "-p", "quality.min_pass_rate=0.9999") == 1
    ids = _run_ids(project)
    forged = _forged_run(project, ids["failed"])
    assert project.cli("report") == 0  # rebuild everything, the forged run's page and the index too

    page.goto((project.reports / "index.html").as_uri())
    rows = page.locator("#runs tbody tr")
    assert rows.count() == 3
    page.select_option("#f-status", "failed")
    visible = page.locator("#runs tbody tr:not([hidden])")
    assert visible.count() == 2
    assert page.locator("#shown").inner_text() == "2"
    page.fill("#f-search", ids["failed"][-6:])
    assert visible.count() == 1
    page.fill("#f-search", "")
    page.select_option("#f-kind", "backfill")
    assert visible.count() == 1
    page.select_option("#f-kind", "")
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    page.fill("#f-from", today)
    assert visible.count() == 1  # the forged 2020 run is before the range
    page.screenshot(path=str(tmp_path / "index-failed.png"), full_page=True)
    _assert_inert(page)

    page.click(f'a[href="{ids["failed"]}/run.html"]')
    banner = page.locator("#failure-banner")
    assert banner.is_visible() and "QualityGateFailed" in banner.inner_text()
    assert banner.bounding_box()["y"] < 200
    assert page.locator("svg").count() == 2
    page.screenshot(path=str(tmp_path / "run-failed.png"), full_page=True)
    _assert_inert(page)

    page.click('a[href="02_transform_quality.html"]')
    first = page.locator(".jp-Cell").first
    assert "This run FAILED in stage transform_quality" in first.inner_text()
    assert page.locator(".eventpipe-failure").bounding_box()["y"] < 200
    page.screenshot(path=str(tmp_path / "notebook-failed.png"), full_page=True)
    _assert_inert(page)

    for target in (
        project.reports / forged / "run.html",
        project.reports / ids["succeeded"] / "01_extract.html",
        project.reports / ids["succeeded"] / "02_transform_quality.html",
        project.reports / ids["succeeded"] / "run.html",
    ):
        page.goto(target.as_uri())
        page.mouse.move(300, 300)
        page.hover("body")
        _assert_inert(page)
        if target.name != "run.html":  # the samples show the hostile records, as text
            body = page.inner_text("body")
            assert "<script>window.__xss=1" in body and "</td></tr></table><b id=" in body
    page.goto((project.reports / forged / "run.html").as_uri())
    assert HOSTILE[2] in page.inner_text("#failure-banner")
    page.screenshot(path=str(tmp_path / "forged-run.png"), full_page=True)
    print(f"screenshots in {tmp_path}")
