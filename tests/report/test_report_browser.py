"""The report in a real browser: headless Chromium (Debian's package) driven by Playwright."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_fixtures import ReportFixture

from browser import launch_chromium, needs_chromium
from capeval.report.builder import ReportOptions, build_report

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


def test_report_renders_charts_and_sample_links_in_chromium(
    browser, report_fixture: ReportFixture, tmp_path: Path
) -> None:
    out = build_report(report_fixture.store, report_fixture.run_ids, tmp_path / "report.html", ReportOptions(arena_bootstrap=200))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(out.as_uri())
    page.screenshot(path=str(tmp_path / "report.png"), full_page=False)

    # every chart is drawn: an <svg> with a visible box and drawn shapes inside it
    charts = page.eval_on_selector_all(
        "svg.chart",
        """els => els.map(e => ({
            kind: e.getAttribute('class'), w: e.getBoundingClientRect().width, h: e.getBoundingClientRect().height,
            shapes: e.querySelectorAll('rect, circle, polygon, path, line').length,
            label: e.getAttribute('aria-label')}))""",
    )
    kinds = {c["kind"].split("chart-")[1] for c in charts}
    assert {"interval", "radar", "strip", "heatmap", "scatter", "range"} <= kinds, kinds
    for c in charts:
        assert c["w"] > 100 and c["h"] > 50 and c["shapes"] > 0, c
    for section in ("capabilities", "weakest-link", "arena", "judge-human", "sensitivity"):
        page.locator(f"#{section}").screenshot(path=str(tmp_path / f"{section}.png"))

    # the radar has one polygon per run (each run is one model or one prompt setup of it)
    polygons = page.eval_on_selector_all("svg.chart-radar polygon.radar-series", "els => els.map(e => e.dataset.series)")
    assert len(polygons) == len(report_fixture.run_ids) == len(set(polygons))

    # every in-page link has a target element
    targets = page.eval_on_selector_all("a[href^='#']", "els => els.map(e => e.getAttribute('href').slice(1))")
    missing = page.evaluate("ids => ids.filter(id => !document.getElementById(id))", targets)
    assert not missing, missing[:5]
    n_samples = page.locator("article.sample").count()
    assert n_samples == report_fixture.n_samples * len(report_fixture.run_ids)
    assert page.locator("a.sample-link").count() == n_samples

    # following a sample link scrolls to that sample, which shows prompt, output and rationale
    link = page.locator("a.sample-link").nth(7)
    anchor = link.get_attribute("href")
    link.click()
    assert page.evaluate("location.hash") == anchor
    article = page.locator(f"article{anchor}")
    assert article.is_visible() and page.evaluate("document.querySelector(location.hash).matches(':target')")
    box = article.bounding_box()
    assert box is not None and 0 <= box["y"] < 900
    article.locator("summary").first.click()  # open the prompt
    assert "What is" in article.inner_text()
    assert "judge rationale" in article.inner_text() and "Verdict:" in article.inner_text()
    page.screenshot(path=str(tmp_path / "sample.png"))

    # the page needed nothing but itself
    assert all(u.startswith("file://") for u in requests), [u for u in requests if not u.startswith("file://")]
    page.close()
