"""The annotators' web app through its HTTP API (FastAPI's TestClient): rows written, no repeats, 4xx on bad input."""

from __future__ import annotations

import html
import re
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from web_fixtures import MODELS, AnnotationFixture, invite

from capeval.store import Store
from capeval.web.app import Limits, create_app
from capeval.web.export import write_ratings_csv
from capeval.web.items import ItemPool, WebError

testclient = pytest.importorskip("fastapi.testclient")


def rows(db: Path, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return list(con.execute(sql, params))
    finally:
        con.close()


def pre(page: str, element_id: str) -> str:
    m = re.search(rf'<pre id="{element_id}">(.*?)</pre>', page, re.DOTALL)
    assert m, f"no #{element_id} on the page"
    return html.unescape(m.group(1))


def token(page: str) -> str:
    m = re.search(r'name="item" value="([^"]+)"', page)
    assert m, "no item on the page"
    return m.group(1)


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, "no CSRF token on the page"
    return m.group(1)


def message(page: str) -> str:
    m = re.search(r'<p id="message">(.*?)</p>', page, re.DOTALL)
    assert m, page[:500]
    return html.unescape(m.group(1))


@pytest.fixture
def app_store(annotation: AnnotationFixture):
    store = Store(annotation.db)
    app = create_app(store, list(annotation.run_ids.values()), n_bootstrap=200, seed=7, limits=Limits(rate_limit=10_000))
    yield app
    store.close()


def sign_in(c, token: str) -> None:
    """Open an invite link and press Start, as a browser does; `c.csrf` is then the session's CSRF token."""
    page = c.get(f"/invite/{token}")
    assert page.status_code == 200, page.text
    r = c.post("/invite", data={"token": token, "csrf": csrf_of(page.text)})
    assert r.status_code == 303 and "capeval_session" in r.cookies
    c.csrf = csrf_of(c.get("/").text)


def client(app, db: Path | None = None, name: str | None = None):
    """A client of `app`, signed in as `name` through a fresh invite link when a name is given."""
    c = testclient.TestClient(app, follow_redirects=False)
    if name is not None:
        assert db is not None
        sign_in(c, invite(db, name))
    return c


def test_ratings_are_stored_with_their_sample_and_never_served_twice(app_store, annotation: AnnotationFixture) -> None:
    ann = client(app_store, annotation.db, "Ada")
    page = ann.get("/rate").text
    # a reload shows the same open item instead of drawing another
    assert token(ann.get("/rate").text) == token(page)
    seen = []
    for k in range(annotation.n_ratings):
        assert f"Rated {k} of {annotation.n_ratings} responses" in page
        text = pre(page, "response")
        model = annotation.model_of_text[text]
        assert not any(m in page for m in MODELS), "the rating page must not name the model"
        assert "<script>" not in page  # outputs are shown as text, never as markup
        r = ann.post("/rate", data={"csrf": ann.csrf, "item": token(page), "rating": str(1 + k % 5), "explanation": f"reason {k}"})
        assert r.status_code == 303 and r.headers["location"] == "/rate?saved=1"
        (row,) = rows(annotation.db, "SELECT * FROM human_ratings ORDER BY rating_id DESC LIMIT 1")
        assert (row["rating"], row["explanation"], row["model_id"], row["run_id"]) == (1 + k % 5, f"reason {k}", model, annotation.run_ids[model])
        seen.append((row["run_id"], row["task"], row["sample_id"]))
        page = ann.get("/rate?saved=1").text
    assert len(set(seen)) == len(seen) == annotation.n_ratings
    assert 'id="done"' in page and f"Rated {annotation.n_ratings} of {annotation.n_ratings}" in page
    (who,) = rows(annotation.db, "SELECT DISTINCT h.annotator_id, a.name FROM human_ratings h JOIN annotators a USING (annotator_id)")
    assert who["name"] == "Ada"
    # the same person signing in later (a new link, a new session) continues, with nothing left to rate
    again = client(app_store, annotation.db, "Ada")
    assert 'id="done"' in again.get("/rate").text
    assert len(rows(annotation.db, "SELECT * FROM annotators")) == 1
    # someone else starts from the beginning
    assert 'id="done"' not in client(app_store, annotation.db, "Grace").get("/rate").text


def test_an_app_restarted_on_the_same_store_does_not_repeat_items(annotation: AnnotationFixture) -> None:
    runs = list(annotation.run_ids.values())
    with Store(annotation.db) as store:
        first = client(create_app(store, runs, seed=1), annotation.db, "Ada")
        done = set()
        for _ in range(5):
            page = first.get("/rate").text
            done.add(pre(page, "prompt") + pre(page, "response"))
            assert first.post("/rate", data={"csrf": first.csrf, "item": token(page), "rating": "3", "explanation": "ok"}).status_code == 303
        # same seed, fresh app: the store, not the app's memory, says what Ada has done
        second = client(create_app(store, runs, seed=1), annotation.db, "Ada")
        for _ in range(annotation.n_ratings - 5):
            page = second.get("/rate").text
            shown = pre(page, "prompt") + pre(page, "response")
            assert shown not in done
            done.add(shown)
            assert second.post("/rate", data={"csrf": second.csrf, "item": token(page), "rating": "3", "explanation": "ok"}).status_code == 303
        assert 'id="done"' in second.get("/rate").text


@pytest.mark.parametrize(
    ("form", "status", "says"),
    [
        ({"rating": "6", "explanation": "x"}, 400, "outside 1-5"),
        ({"rating": "0", "explanation": "x"}, 400, "outside 1-5"),
        ({"rating": "3.5", "explanation": "x"}, 400, "outside 1-5"),
        ({"rating": "good", "explanation": "x"}, 400, "not a number"),
        ({"explanation": "x"}, 400, "a rating is required"),
        ({"rating": "4", "explanation": "   "}, 400, "an explanation is required"),
        ({"rating": "4"}, 400, "an explanation is required"),
    ],
)
def test_bad_ratings_are_refused_with_a_message(app_store, annotation: AnnotationFixture, form, status, says) -> None:
    ann = client(app_store, annotation.db, "Ada")
    item = token(ann.get("/rate").text)
    r = ann.post("/rate", data={"csrf": ann.csrf, "item": item, **form})
    assert r.status_code == status and says in message(r.text)
    assert rows(annotation.db, "SELECT * FROM human_ratings") == []
    # the item stays open: a corrected answer is accepted
    assert ann.post("/rate", data={"csrf": ann.csrf, "item": item, "rating": "4", "explanation": "fine"}).status_code == 303


def test_answers_to_items_not_served_to_you_are_refused(app_store, annotation: AnnotationFixture) -> None:
    ada, grace = client(app_store, annotation.db, "Ada"), client(app_store, annotation.db, "Grace")
    ada_item = token(ada.get("/rate").text)
    r = grace.post("/rate", data={"csrf": grace.csrf, "item": ada_item, "rating": "4", "explanation": "x"})
    assert r.status_code == 403 and "served to another annotator" in message(r.text)
    r = ada.post("/rate", data={"csrf": ada.csrf, "item": "made-up", "rating": "4", "explanation": "x"})
    assert r.status_code == 404 and "unknown rating item" in message(r.text)
    battle_item = token(ada.get("/battle").text)
    r = ada.post("/rate", data={"csrf": ada.csrf, "item": battle_item, "rating": "4", "explanation": "x"})
    assert r.status_code == 404  # a battle's token is not a rating item
    assert ada.post("/rate", data={"csrf": ada.csrf, "item": ada_item, "rating": "4", "explanation": "x"}).status_code == 303
    r = ada.post("/rate", data={"csrf": ada.csrf, "item": ada_item, "rating": "5", "explanation": "again"})
    assert r.status_code == 409 and "already answered" in message(r.text)
    r = client(app_store).post("/rate", data={"item": ada_item, "rating": "4", "explanation": "x"})
    assert r.status_code == 401 and "sign in first" in message(r.text)
    r = ada.post("/rate", json={"item": ada_item, "rating": 4, "explanation": "x"})
    assert r.status_code == 415 and "x-www-form-urlencoded" in message(r.text)
    r = ada.post("/battle", data={"csrf": ada.csrf, "item": battle_item, "choice": "C"})
    assert r.status_code == 400 and "not one of A, B, tie, bothbad" in message(r.text)
    r = ada.post("/battle", data={"csrf": ada.csrf, "item": ada_item, "choice": "A"})
    assert r.status_code == 404 and "unknown battle" in message(r.text)
    assert rows(annotation.db, "SELECT COUNT(*) AS n FROM annotators")[0]["n"] == 2
    (rating,) = rows(annotation.db, "SELECT rating FROM human_ratings")
    assert rating["rating"] == 4 and rows(annotation.db, "SELECT * FROM pairwise_votes") == []


def test_battles_hide_models_until_the_vote_and_store_what_was_shown(app_store, annotation: AnnotationFixture) -> None:
    ann = client(app_store, annotation.db, "Ada")
    seen, firsts = Counter(), Counter()
    choices = ["A", "B", "tie", "bothbad"]
    for k in range(annotation.n_battles):
        page = ann.get("/battle").text
        assert f"voted in {k} of {annotation.n_battles} battles" in page
        assert not any(m in page for m in MODELS) and not any(r in page for r in annotation.run_ids.values())
        a, b = pre(page, "response-a"), pre(page, "response-b")
        model_a, model_b = annotation.model_of_text[a], annotation.model_of_text[b]
        assert model_a != model_b
        choice = choices[k % 4]
        r = ann.post("/battle", data={"csrf": ann.csrf, "item": token(page), "choice": choice, "explanation": "" if k % 2 else "clearer"})
        assert r.status_code == 200
        # after the vote the page names both sides
        assert re.search(rf'id="model-a">{model_a}<', r.text) and re.search(rf'id="model-b">{model_b}<', r.text)
        (v,) = rows(annotation.db, "SELECT * FROM pairwise_votes ORDER BY vote_id DESC LIMIT 1")
        winner = {"A": "model_a", "B": "model_b", "tie": "tie", "bothbad": "tie (bothbad)"}[choice]
        assert (v["source"], v["model_a"], v["model_b"], v["winner"]) == ("human", model_a, model_b, winner)
        assert (v["run_a"], v["run_b"]) == (annotation.run_ids[model_a], annotation.run_ids[model_b])
        assert v["explanation"] == (None if k % 2 else "clearer")
        question = pre(page, "prompt")
        assert v["prompt_id"].startswith("qa/q") and question.startswith("What is")
        seen[(v["prompt_id"], frozenset((model_a, model_b)))] += 1
        firsts[model_a] += 1
    assert len(seen) == annotation.n_battles and set(seen.values()) == {1}
    # sides are drawn at random: every model was shown as A at least once
    assert set(firsts) == set(MODELS)
    assert 'id="done"' in ann.get("/battle").text
    # the same vote cannot be sent twice
    assert ann.post("/battle", data={"csrf": ann.csrf, "item": token(page), "choice": "A"}).status_code == 409


def vote_as_people_would(c, fx: AnnotationFixture, k0: int) -> int:
    """Vote every battle for the better model (MODELS order), with a tie every 6th and an upset every 7th."""
    n = 0
    while True:
        page = c.get("/battle").text
        if 'id="done"' in page:
            return n
        a, b = fx.model_of_text[pre(page, "response-a")], fx.model_of_text[pre(page, "response-b")]
        better_a = MODELS.index(a) < MODELS.index(b)
        k = k0 + n
        choice = "tie" if k % 6 == 5 else ("A" if better_a else "B") if k % 7 != 3 else ("B" if better_a else "A")
        assert c.post("/battle", data={"csrf": c.csrf, "item": token(page), "choice": choice}).status_code == 200
        n += 1


def test_leaderboard_and_capeval_arena_rank_the_voted_models(app_store, annotation: AnnotationFixture, tmp_path) -> None:
    from capeval.analysis.arena import arena_leaderboard
    from capeval.analysis.tables import battles_from_store

    assert "no human votes yet" in client(app_store).get("/leaderboard").text
    total = 0
    for i, name in enumerate(("Ada", "Grace", "Linus")):
        total += vote_as_people_would(client(app_store, annotation.db, name), annotation, 100 * i)
    assert total == 3 * annotation.n_battles
    with Store(annotation.db) as store:
        battles = battles_from_store(store, "human")
        board = arena_leaderboard(battles, n_bootstrap=200, seed=0)
    assert len(battles) == total
    assert [r.model for r in board.ratings] == list(MODELS)
    strong, _, weak = board.ratings
    assert strong.ci_low > weak.ci_high  # 90 votes separate the best from the worst
    page = client(app_store).get("/leaderboard").text
    shown = re.findall(r"<tr><td class=\"num\">(\d+)</td><td>([^<]+)</td><td class=\"num\">([-\d.]+)</td>", page)
    assert [(m, float(v)) for _, m, v in shown] == [(r.model, pytest.approx(r.rating, abs=0.05)) for r in board.ratings]
    assert f"all {total} human votes" in page

    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "capeval", "arena", "--db", str(annotation.db), "--source", "human",
         "--bootstrap", "200", "--json", str(tmp_path / "arena.json")],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr
    import json

    cli = json.loads((tmp_path / "arena.json").read_text())
    assert [r["model"] for r in cli["ratings"]] == list(MODELS) and cli["n_battles"] == total
    assert [r["rating"] for r in cli["ratings"]] == pytest.approx([r.rating for r in board.ratings])


def test_exported_ratings_are_what_judge_check_reads(app_store, annotation: AnnotationFixture, tmp_path) -> None:
    from capeval.judge.check import csv_rated, detect_format, read_rows

    given: dict[str, list[float]] = {}
    for name, n_items in (("Ada", annotation.n_ratings), ("Grace", 6)):
        c = client(app_store, annotation.db, name)
        for k in range(n_items):
            page = c.get("/rate").text
            score = 1 + (k + len(name)) % 5
            given.setdefault(pre(page, "prompt") + "\n" + pre(page, "response"), []).append(score)
            assert c.post("/rate", data={"csrf": c.csrf, "item": token(page), "rating": str(score), "explanation": "why"}).status_code == 303
    with Store(annotation.db) as store:
        n = write_ratings_csv(store, tmp_path / "ratings.csv")
    assert n == annotation.n_ratings + 6
    data = read_rows(tmp_path / "ratings.csv")
    assert detect_format(data) == "csv"
    rated = csv_rated(data)
    got = {r.item.prompt + "\n" + r.item.response: r.human_ratings for r in rated}
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in given.items()}
    assert len(rated) == annotation.n_ratings and sum(len(r.human_ratings) == 2 for r in rated) == 6
    assert {r.group for r in rated} == {"qa", "other"}  # no capability in the metadata: the task


def test_item_pool_pairs_only_different_models_on_the_same_task_and_sample(annotation: AnnotationFixture) -> None:
    from web_fixtures import add_run

    with Store(annotation.db) as store:
        # a second run of the strong model under another prompt: rated, but never battled against its own model
        again = add_run(store, "model-strong", [("qa", "q0", "What is 4 + 1?", "5, clearly.")])
        pool = ItemPool.load(store, [*annotation.run_ids.values(), again[:-2]])
        assert len(pool.ratings) == annotation.n_ratings + 1
        pairs = Counter(frozenset((b.first.model_id, b.second.model_id)) for b in pool.battles)
        assert len(pool.battles) == annotation.n_battles + 2  # q0 of the new run vs middle and weak
        assert all(len(p) == 2 for p in pairs)
        assert all(b.first.task == b.second.task and b.first.sample_id == b.second.sample_id for b in pool.battles)
        with pytest.raises(WebError, match="no run 'nope'"):
            ItemPool.load(store, ["nope"])
        with pytest.raises(WebError, match="ambiguous"):
            ItemPool.load(store, [again[:4]])


def test_stores_made_before_the_run_columns_gain_them(tmp_path) -> None:
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE pairwise_votes (vote_id INTEGER PRIMARY KEY AUTOINCREMENT, annotator_id TEXT, "
        "source TEXT NOT NULL DEFAULT 'human', prompt_id TEXT, model_a TEXT NOT NULL, model_b TEXT NOT NULL, "
        "winner TEXT NOT NULL, explanation TEXT, created_at REAL NOT NULL)"
    )
    con.execute("INSERT INTO pairwise_votes (model_a, model_b, winner, created_at) VALUES ('x', 'y', 'model_a', 1)")
    con.commit()
    con.close()
    with Store(db) as store:
        store.add_pairwise_vote("y", "x", "tie", prompt_id="t/1", run_a="r1", run_b="r2")
        got = [tuple(r) for r in store.query("SELECT model_a, model_b, winner, run_a, run_b FROM pairwise_votes ORDER BY vote_id")]
    assert got == [("x", "y", "model_a", None, None), ("y", "x", "tie", "r1", "r2")]
