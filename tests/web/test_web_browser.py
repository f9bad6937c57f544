"""The web app in a real browser: Debian's Chromium through Playwright, against the app served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import sqlite3

import pytest
from web_fixtures import MODELS, AnnotationFixture, add_run, invite

from browser import launch_chromium, needs_chromium
from capeval.store import Store

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


@pytest.fixture
def server(annotation: AnnotationFixture):
    from capeval.models.serve import ServerThread
    from capeval.web.app import create_app

    store = Store(annotation.db)
    srv = ServerThread(create_app(store, list(annotation.run_ids.values()), n_bootstrap=100)).start()
    yield f"http://{srv.host}:{srv.port}"
    srv.stop()
    store.close()


def test_log_in_rate_and_vote_by_clicking(browser, server: str, annotation: AnnotationFixture, tmp_path) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server + "/")
    assert page.get_by_role("button", name="Sign in").is_visible()  # a name alone is not enough: name and password
    page.goto(f"{server}/invite/{invite(annotation.db, 'Ada')}")
    page.get_by_role("button", name="Start as Ada").click()
    assert page.get_by_role("heading", name="Welcome, Ada").is_visible()

    page.get_by_role("link", name="Rate", exact=True).click()
    response = page.locator("#response").inner_text()
    assert "Rated 0 of 32 responses" in page.locator("#progress").inner_text()
    page.get_by_label("4").check()
    # the explanation is required: the browser does not send the form without it
    page.get_by_role("button", name="Save rating").click()
    assert page.url.endswith("/rate")
    page.fill("#explanation", "Right sum, and it says how.")
    page.get_by_role("button", name="Save rating").click()
    assert page.get_by_text("Rating saved.").is_visible()
    assert "Rated 1 of 32 responses" in page.locator("#progress").inner_text()
    assert page.locator("#response").inner_text() != response
    page.screenshot(path=str(tmp_path / "rate.png"))

    page.get_by_role("link", name="Battle", exact=True).click()
    text_a, text_b = page.locator("#response-a").inner_text(), page.locator("#response-b").inner_text()
    body = page.inner_text("body")
    assert not any(m in body for m in MODELS)
    page.screenshot(path=str(tmp_path / "battle.png"))
    page.get_by_role("button", name="A is better").click()
    model_a, model_b = annotation.model_of_text[text_a], annotation.model_of_text[text_b]
    assert page.locator("#model-a").inner_text() == model_a and page.locator("#model-b").inner_text() == model_b
    assert "voted in 1 of 30 battles" in page.locator("#progress").inner_text()
    page.get_by_role("link", name="Next battle").click()
    assert page.locator("#response-a").is_visible()

    page.get_by_role("link", name="Leaderboard").click()
    board = page.locator("#leaderboard")
    assert board.is_visible() and board.locator("tr").count() == 3  # header + the two models voted on
    assert board.locator("tr").nth(1).inner_text().split("\t")[1] == model_a
    page.close()

    con = sqlite3.connect(annotation.db)
    try:
        ratings = con.execute("SELECT a.name, h.rating, h.explanation, h.model_id FROM human_ratings h "
                              "JOIN annotators a USING (annotator_id)").fetchall()
        votes = con.execute("SELECT a.name, v.source, v.model_a, v.model_b, v.winner FROM pairwise_votes v "
                            "JOIN annotators a USING (annotator_id)").fetchall()
    finally:
        con.close()
    assert ratings == [("Ada", 4.0, "Right sum, and it says how.", annotation.model_of_text[response])]
    assert votes == [("Ada", "human", model_a, model_b, "model_a")]
    # everything the pages needed came from the app itself
    assert all(u.startswith(server) for u in requests), [u for u in requests if not u.startswith(server)]


ATTACKS = ["<script>alert('xss')</script>", '"><img src=x onerror=alert(1)>', "</pre><b id=injected>bold</b>"]


def test_model_output_and_names_stay_text_in_the_browser(browser, annotation: AnnotationFixture) -> None:
    from capeval.models.serve import ServerThread
    from capeval.web.app import create_app

    store = Store(annotation.db)
    evil = add_run(store, "model-evil", [("qa", f"x{i}", f"Repeat this: {a}", a) for i, a in enumerate(ATTACKS)])
    srv = ServerThread(create_app(store, [evil], admin_token="admin-token")).start()
    server = f"http://{srv.host}:{srv.port}"
    from playwright.sync_api import expect

    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(f"{server}/invite/{invite(annotation.db, '<img src=y onerror=alert(2)>Eve')}")
        page.get_by_role("button", name="Start as <img src=y onerror=alert(2)>Eve").click()
        with page.expect_navigation():
            page.get_by_role("link", name="Rate", exact=True).click()
        for k in range(len(ATTACKS)):  # each saved rating's page shows the next response
            shown = page.locator("#response").inner_text()
            assert shown in ATTACKS  # the text exactly as the model wrote it
            assert page.locator("#prompt").inner_text().endswith(shown)
            assert page.locator("main img, main script, #injected").count() == 0
            page.get_by_label("2").check()
            page.fill("#explanation", "it tries to inject markup")
            page.get_by_role("button", name="Save rating").click()
            # the next page has loaded once the progress line counts this rating (expect waits for it)
            expect(page.locator("#progress")).to_contain_text(f"Rated {k + 1} of {len(ATTACKS)} responses")
            assert page.get_by_text("Rating saved.").is_visible()
        assert page.locator(".who").inner_text().startswith("<img src=y onerror=alert(2)>Eve")
        page.goto(server + "/admin")
        page.fill("#token", "admin-token")
        page.get_by_role("button", name="Open").click()
        assert page.locator("#annotators").get_by_text("<img src=y onerror=alert(2)>Eve").is_visible()
        assert page.locator("img").count() == 0 and dialogs == []
    finally:
        page.close()
        srv.stop()
        store.close()
