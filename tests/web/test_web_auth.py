"""Identity in the annotators' web app: no sign-in by name alone, forged and replayed posts refused,
sessions that expire, rate limits and quotas, model output that stays text, the admin page."""

from __future__ import annotations

import html
import re

import pytest
from test_web_app import client, csrf_of, message, pre, rows, sign_in, token
from web_fixtures import AnnotationFixture, add_run, invite

from capeval.analysis.agreement import rating_agreement
from capeval.store import Store
from capeval.web import auth
from capeval.web.app import LOGIN_ATTEMPTS, SECURITY_HEADERS, Limits, create_app

testclient = pytest.importorskip("fastapi.testclient")


class Clock:
    """A clock the test moves: sessions and rate limits read it instead of the wall clock."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(annotation: AnnotationFixture):
    with Store(annotation.db) as s:
        yield s


def make_app(store: Store, fx: AnnotationFixture, **kw):
    kw.setdefault("limits", Limits(rate_limit=10_000))
    return create_app(store, list(fx.run_ids.values()), n_bootstrap=100, seed=3, **kw)


def count(fx: AnnotationFixture, table: str) -> int:
    return rows(fx.db, f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]


def rate_one(c, rating: int = 4, explanation: str = "fine") -> int:
    page = c.get("/rate").text
    return c.post("/rate", data={"csrf": c.csrf, "item": token(page), "rating": str(rating), "explanation": explanation}).status_code


def test_a_name_alone_signs_nobody_in_and_passwords_are_checked(store, annotation: AnnotationFixture) -> None:
    app = make_app(store, annotation)
    auth.add_annotator(store, "Grace", password="correct horse battery")
    c = client(app)
    login_csrf = csrf_of(c.get("/").text)
    for form, status, says in [
        ({"name": "Ada"}, 400, "give your name and password"),
        ({"name": "Ada", "password": "anything at all"}, 403, "wrong name or password"),  # no such annotator
        ({"name": "Grace", "password": "correct horse"}, 403, "wrong name or password"),
        ({"name": "x" * 81, "password": "correct horse battery"}, 400, "longer than 80"),
    ]:
        r = c.post("/login", data={"csrf": login_csrf, **form})
        assert r.status_code == status and says in message(r.text)
    assert count(annotation, "annotators") == 1 and count(annotation, "annotator_sessions") == 0
    r = c.post("/login", data={"csrf": login_csrf, "name": "Grace", "password": "correct horse battery"})
    assert r.status_code == 303 and "capeval_session" in r.cookies
    assert "Welcome, Grace" in c.get("/").text
    # what the store keeps: an argon2id hash, never the password; for invites and sessions only sha256
    (cred,) = rows(annotation.db, "SELECT * FROM annotator_credentials")
    assert cred["secret_hash"].startswith("$argon2id$") and "correct horse" not in cred["secret_hash"]
    (sess,) = rows(annotation.db, "SELECT * FROM annotator_sessions")
    assert sess["session_hash"] == auth.token_hash(c.cookies["capeval_session"])
    ada = invite(annotation.db, "Ada")
    (cred,) = rows(annotation.db, "SELECT c.* FROM annotator_credentials c JOIN annotators a USING (annotator_id) WHERE a.name = 'Ada'")
    assert cred["secret_hash"] == auth.token_hash(ada) and ada not in cred["secret_hash"]
    # the sign-in forms carry their own CSRF token (double-submit: cookie and field must match)
    fresh = client(app)
    r = fresh.post("/login", data={"name": "Grace", "password": "correct horse battery"})
    assert r.status_code == 403 and "sign-in form is stale" in message(r.text)
    r = fresh.post("/invite", data={"token": ada, "csrf": "forged"})
    assert r.status_code == 403 and "capeval_session" not in r.cookies
    with pytest.raises(auth.AuthError, match="already exists"):
        auth.add_annotator(store, "Grace")
    with pytest.raises(auth.AuthError, match="shorter than 8"):
        auth.add_annotator(store, "Linus", password="short")


def test_password_guesses_are_limited_per_name(store, annotation: AnnotationFixture) -> None:
    clock = Clock()
    app = make_app(store, annotation, clock=clock)
    auth.add_annotator(store, "Grace", password="correct horse battery")
    c = client(app)
    csrf = csrf_of(c.get("/").text)
    guesses = [c.post("/login", data={"csrf": csrf, "name": "Grace", "password": f"guess {i}"}).status_code for i in range(LOGIN_ATTEMPTS)]
    assert guesses == [403] * LOGIN_ATTEMPTS
    # the next attempt is refused before the password is checked, even the right one, and from another client
    other = client(app)
    r = other.post("/login", data={"csrf": csrf_of(other.get("/").text), "name": "grace", "password": "correct horse battery"})
    assert r.status_code == 429 and "too many sign-in attempts" in message(r.text)
    clock.now += 61
    r = c.post("/login", data={"csrf": csrf, "name": "Grace", "password": "correct horse battery"})
    assert r.status_code == 303


def test_forged_and_replayed_posts_are_refused(store, annotation: AnnotationFixture) -> None:
    app = make_app(store, annotation)
    link = invite(annotation.db, "Ada")
    ada, ada2, grace = client(app), client(app), client(app, annotation.db, "Grace")
    sign_in(ada, link)
    page = ada.get("/rate").text
    item = token(page)
    answer = {"item": item, "rating": "4", "explanation": "right"}
    for csrf, says in [
        (None, "carries no CSRF token"),
        ("made-up", "not this session's"),
        (grace.csrf, "not this session's"),  # a valid token, but of another session
    ]:
        r = ada.post("/rate", data={**answer, **({"csrf": csrf} if csrf else {})})
        assert r.status_code == 403 and says in message(r.text)
    # the same person's second session (another browser) has its own token: the first one's does not pass there
    sign_in(ada2, link)
    assert ada2.csrf != ada.csrf
    assert ada2.post("/rate", data={**answer, "csrf": ada.csrf}).status_code == 403
    assert count(annotation, "human_ratings") == 0
    assert ada.post("/rate", data={**answer, "csrf": ada.csrf}).status_code == 303
    # replaying the accepted post (same item token, same CSRF token) writes nothing more
    r = ada.post("/rate", data={**answer, "csrf": ada.csrf})
    assert r.status_code == 409 and "already answered" in message(r.text)
    assert count(annotation, "human_ratings") == 1
    # a vote forged without the token, then the real one, then its replay
    battle = ada.get("/battle").text
    assert ada.post("/battle", data={"item": token(battle), "choice": "A"}).status_code == 403
    assert ada.post("/battle", data={"csrf": ada.csrf, "item": token(battle), "choice": "A"}).status_code == 200
    assert ada.post("/battle", data={"csrf": ada.csrf, "item": token(battle), "choice": "A"}).status_code == 409
    assert count(annotation, "pairwise_votes") == 1
    # logging out needs the token too; afterwards the old cookie is worth nothing
    cookie = ada.cookies["capeval_session"]
    assert ada.post("/logout", data={"csrf": ""}).status_code == 403
    assert ada.post("/logout", data={"csrf": ada.csrf}).status_code == 303
    thief = client(app)
    thief.cookies.set("capeval_session", cookie)
    r = thief.post("/rate", data={**answer, "csrf": ada.csrf})
    assert r.status_code == 401
    assert count(annotation, "human_ratings") == 1


def test_a_second_name_cannot_reach_the_first_ones_items(store, annotation: AnnotationFixture) -> None:
    app = make_app(store, annotation)
    ada, grace = client(app, annotation.db, "Ada"), client(app, annotation.db, "Grace")
    ada_rate, ada_battle = token(ada.get("/rate").text), token(ada.get("/battle").text)
    grace_rate = token(grace.get("/rate").text)
    assert grace_rate != ada_rate
    for path, form in [("/rate", {"item": ada_rate, "rating": "1", "explanation": "sabotage"}), ("/battle", {"item": ada_battle, "choice": "B"})]:
        r = grace.post(path, data={"csrf": grace.csrf, **form})
        assert r.status_code == 403 and "served to another annotator" in message(r.text)
        # nor with Ada's CSRF token copied from her page
        assert grace.post(path, data={"csrf": ada.csrf, **form}).status_code == 403
    assert count(annotation, "human_ratings") == 0 and count(annotation, "pairwise_votes") == 0
    # Ada's items are still hers to answer, and Grace's own item works for Grace
    assert ada.post("/rate", data={"csrf": ada.csrf, "item": ada_rate, "rating": "5", "explanation": "mine"}).status_code == 303
    assert grace.post("/rate", data={"csrf": grace.csrf, "item": grace_rate, "rating": "2", "explanation": "hers"}).status_code == 303
    got = {(r["name"], r["explanation"]) for r in rows(annotation.db, "SELECT a.name, h.explanation FROM human_ratings h JOIN annotators a USING (annotator_id)")}
    assert got == {("Ada", "mine"), ("Grace", "hers")}
    # a new invite link for Ada ends her old sessions: whoever held the old link or cookie is out
    invite(annotation.db, "Ada")
    assert ada.get("/rate").status_code == 303  # back to the start page
    assert ada.post("/rate", data={"csrf": ada.csrf, "item": ada_rate, "rating": "5", "explanation": "x"}).status_code == 401


def test_sessions_expire(store, annotation: AnnotationFixture) -> None:
    clock = Clock()
    app = make_app(store, annotation, limits=Limits(rate_limit=10_000, session_hours=2), clock=clock)
    link = invite(annotation.db, "Ada")
    ada = client(app)
    sign_in(ada, link)
    clock.now += 2 * 3600 - 1
    assert rate_one(ada) == 303
    clock.now += 2
    assert ada.get("/rate").status_code == 303  # to the start page, which says why
    start = ada.get("/").text
    assert 'id="expired"' in start and "Welcome" not in start
    r = ada.post("/rate", data={"csrf": ada.csrf, "item": "x", "rating": "4", "explanation": "late"})
    assert r.status_code == 401 and "session has expired" in message(r.text)
    sign_in(ada, link)  # the invite link signs her in again
    assert rate_one(ada) == 303
    assert count(annotation, "human_ratings") == 2


def test_rate_limits_and_quotas(store, annotation: AnnotationFixture) -> None:
    clock = Clock()
    app = make_app(store, annotation, limits=Limits(rate_limit=3, quota=5), clock=clock)
    ada = client(app, annotation.db, "Ada")
    assert [rate_one(ada) for _ in range(3)] == [303, 303, 303]
    page = ada.get("/rate").text
    r = ada.post("/rate", data={"csrf": ada.csrf, "item": token(page), "rating": "3", "explanation": "quick"})
    assert r.status_code == 429 and "faster than 3 per minute" in message(r.text)
    assert count(annotation, "human_ratings") == 3
    clock.now += 61
    # the same item is still open and now accepted; other annotators were never slowed
    assert ada.post("/rate", data={"csrf": ada.csrf, "item": token(page), "rating": "3", "explanation": "quick"}).status_code == 303
    grace = client(app, annotation.db, "Grace")
    assert [rate_one(grace) for _ in range(3)] == [303, 303, 303]
    # the app's quota (5 answers, ratings and votes together)
    battle = ada.get("/battle").text
    assert ada.post("/battle", data={"csrf": ada.csrf, "item": token(battle), "choice": "tie"}).status_code == 200
    clock.now += 61
    assert 'id="quota"' in ada.get("/rate").text and "quota of 5 answers" in ada.get("/battle").text
    pending = token(grace.get("/rate").text)
    with Store(annotation.db) as s:
        auth.set_quota(s, "Grace", 3)  # her own quota comes first
    r = grace.post("/rate", data={"csrf": grace.csrf, "item": pending, "rating": "4", "explanation": "over"})
    assert r.status_code == 403 and "quota of 3 answers" in message(r.text)
    linus = client(app)
    sign_in(linus, invite(annotation.db, "Linus", quota=8))  # a quota above the app's default
    clock.now += 61
    assert [rate_one(linus) for _ in range(3)] == [303] * 3
    per_name = rows(annotation.db, "SELECT a.name, COUNT(*) AS n FROM human_ratings h JOIN annotators a USING (annotator_id) "
                                   "GROUP BY a.name ORDER BY a.name")
    assert [(r["name"], r["n"]) for r in per_name] == [("Ada", 4), ("Grace", 3), ("Linus", 3)]


def test_model_output_is_shown_as_text_never_markup(store, annotation: AnnotationFixture) -> None:
    attacks = [
        "<script>alert('xss')</script>",
        '"><img src=x onerror=alert(1)>',
        "</pre><a href=\"javascript:alert(1)\">click</a>",
    ]
    with Store(annotation.db) as s:
        evil = add_run(s, "model-evil", [("qa", f"q{i}", f"What is {3 * i + 4} + {2 * i + 1}? {a}", a) for i, a in enumerate(attacks)])
    app = create_app(store, [*annotation.run_ids.values(), evil], limits=Limits(rate_limit=10_000), seed=0)
    auth.add_annotator(store, "<b onmouseover=alert(1)>Mallory</b>")
    ada = client(app, annotation.db, "Ada")
    seen = 0
    while True:
        r = ada.get("/rate")
        assert all(r.headers[k] == v for k, v in SECURITY_HEADERS.items())
        page = r.text
        if 'id="done"' in page:
            break
        shown = pre(page, "response")
        if shown in attacks or "<script>" in shown:
            seen += 1
            raw = re.search(r'<pre id="response">(.*?)</pre>', page, re.DOTALL).group(1)
            assert "<" not in raw and html.unescape(raw) == shown  # escaped, and shown as written
        assert not re.search(r"<(script|img|a href=\"javascript)", page)
        assert ada.post("/rate", data={"csrf": ada.csrf, "item": token(page), "rating": "1", "explanation": "x"}).status_code == 303
    assert seen == len(attacks) + 1  # the fixture's own "<script>alert(1)</script>" answer too
    for _ in range(12):
        page = ada.get("/battle").text
        assert not re.search(r"<(script|img)|href=\"javascript", page)
        r = ada.post("/battle", data={"csrf": ada.csrf, "item": token(page), "choice": "A"})
        assert not re.search(r"<(script|img)|href=\"javascript", r.text)


def test_admin_page_needs_its_token_and_shows_counts_and_agreement(store, annotation: AnnotationFixture) -> None:
    app = make_app(store, annotation, admin_token="s3cret-admin")
    given = {"Ada": annotation.n_ratings, "Grace": 12, "Linus": 6}
    for i, (name, n) in enumerate(given.items()):
        c = client(app, annotation.db, name)
        for k in range(n):
            assert rate_one(c, rating=1 + (k * (i + 1) + i) % 5, explanation=f"{name} {k}") == 303
        if name == "Grace":
            page = c.get("/battle").text
            assert c.post("/battle", data={"csrf": c.csrf, "item": token(page), "choice": "B"}).status_code == 200
    auth.add_annotator(store, "<i>Eve</i>")
    visitor = client(app)
    r = visitor.get("/admin")
    assert r.status_code == 401 and 'name="token"' in r.text and "Ada" not in r.text
    assert visitor.get("/admin", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = visitor.post("/admin/login", data={"csrf": csrf_of(r.text), "token": "wrong"})
    assert r.status_code == 403 and "wrong admin token" in message(r.text)
    # a signed-in annotator is no admin either
    assert client(app, annotation.db, "Mallory").get("/admin").status_code == 401
    r = visitor.post("/admin/login", data={"csrf": csrf_of(visitor.get("/admin").text), "token": "s3cret-admin"})
    assert r.status_code == 303
    page = visitor.get("/admin")
    assert page.status_code == 200
    scripted = client(app).get("/admin", headers={"Authorization": "Bearer s3cret-admin"})  # for scripts: the token as a header
    assert scripted.status_code == 200 and 'id="annotators"' in scripted.text
    table = re.findall(r"<tr><td>([^<]*)</td><td>(\w+)</td><td class=\"num\">(\w+)</td>\s*<td class=\"num\">(\d+)</td><td class=\"num\">(\d+)</td>", page.text)
    assert [(html.unescape(n), kind, int(r), int(v)) for n, kind, _, r, v in table] == [
        ("<i>Eve</i>", "invite", 0, 0), ("Ada", "invite", annotation.n_ratings, 0), ("Grace", "invite", 12, 1),
        ("Linus", "invite", 6, 0), ("Mallory", "invite", 0, 0)]
    assert "<i>Eve</i>" not in page.text  # names are text too
    ratings = rows(annotation.db, "SELECT h.run_id, h.task, h.sample_id, a.name, h.rating FROM human_ratings h JOIN annotators a USING (annotator_id)")
    expected = rating_agreement(((r["run_id"], r["task"], r["sample_id"]), r["name"], r["rating"]) for r in ratings)
    # fewest-answered first: Ada rated everything, then Grace 12 items and Linus 6 others (those with one rating)
    assert (expected.n_items, expected.n_annotators) == (18, 3)
    assert [(p.annotator_a, p.annotator_b, p.n_items) for p in expected.pairs] == [("Ada", "Grace", 12), ("Ada", "Linus", 6)]
    assert f'id="alpha-ordinal">{expected.alpha_ordinal:.3f}<' in page.text
    assert f'id="alpha-interval">{expected.alpha_interval:.3f}<' in page.text
    kappas = re.findall(r"<tr><td>(\w+)</td><td>(\w+)</td><td class=\"num\">(\d+)</td>\s*<td class=\"num\">([-\d.–]+)</td><td class=\"num\">([-\d.–]+)</td>", page.text)
    assert [(a, b, int(n)) for a, b, n, _, _ in kappas] == [(p.annotator_a, p.annotator_b, p.n_items) for p in expected.pairs]
    assert [k for *_, k, _ in kappas] == [f"{p.kappa:.3f}" if p.kappa == p.kappa else "–" for p in expected.pairs]
    assert [q for *_, q in kappas] == [f"{p.kappa_quadratic:.3f}" if p.kappa_quadratic == p.kappa_quadratic else "–" for p in expected.pairs]
    # an app started without an admin token has no admin page at all
    assert client(make_app(store, annotation)).get("/admin").status_code == 404


def test_people_arriving_together_are_served_different_items(store, annotation: AnnotationFixture) -> None:
    app = make_app(store, annotation)
    people = [client(app, annotation.db, f"person-{i}") for i in range(annotation.n_ratings + 3)]
    # everyone opens the rating page before anyone answers: an item open on someone's page counts
    # as answered when the next person is served, so the first 32 see 32 different responses
    shown = [pre(c.get("/rate").text, "prompt") + "\n" + pre(c.get("/rate").text, "response") for c in people]
    assert len(set(shown[: annotation.n_ratings])) == annotation.n_ratings
    assert len(set(shown)) == annotation.n_ratings


def test_a_store_from_before_sign_in_gains_its_tables_and_keeps_each_persons_ratings(tmp_path) -> None:
    import sqlite3

    from capeval.store import migrations

    db = tmp_path / "v1.db"
    con = sqlite3.connect(db)
    migrations.MIGRATIONS[0].apply(con)
    con.execute("PRAGMA user_version = 1")
    # a name-only annotator and their rating, as the app wrote them before sign-in was required
    con.execute("INSERT INTO annotators VALUES ('old-ada-id', 'Ada', 1.0)")
    con.execute("INSERT INTO human_ratings (annotator_id, run_id, task, sample_id, model_id, rating, explanation, created_at) "
                "VALUES ('old-ada-id', 'r', 'qa', 'q0', 'm', 4, 'fine', 2.0)")
    con.commit()
    con.close()
    with Store(db) as store:
        assert store.schema_version == migrations.latest_version()
        assert [p.sign_in for p in auth.annotator_counts(store)] == ["none"]  # cannot sign in yet
        annotator, link = auth.add_annotator(store, "Ada")
        assert annotator.annotator_id == "old-ada-id" and auth.by_invite(store, link) == annotator
        (ada,) = auth.annotator_counts(store)
        assert (ada.name, ada.sign_in, ada.ratings) == ("Ada", "invite", 1)


def _set(out: dict[str, str], response) -> None:
    """Each cookie `response` sets (not those it deletes), by name, into `out`."""
    out.update({h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie") if "max-age=0" not in h.lower()})


@pytest.mark.parametrize("base_url, forced, secure", [
    ("http://testserver", False, False), ("https://testserver", False, True), ("http://testserver", True, True),
])
def test_cookies_are_secure_over_https_or_when_told(store, annotation: AnnotationFixture, base_url, forced, secure) -> None:
    app = make_app(store, annotation, limits=Limits(rate_limit=10_000, secure_cookies=forced), admin_token="adm")
    c = testclient.TestClient(app, base_url=base_url, follow_redirects=False)
    cookies: dict[str, str] = {}
    link = invite(annotation.db, "Ada")

    def post_form(path: str, page, **fields: str):
        # the sign-in cookie sent by hand: no client sends a Secure cookie to an http:// address,
        # which is what the app sees behind a TLS proxy on another machine
        login = cookies["capeval_login"].split(";", 1)[0]
        return c.post(path, data={**fields, "csrf": csrf_of(page.text)}, headers={"cookie": login})

    _set(cookies, page := c.get(f"/invite/{link}"))
    _set(cookies, post_form("/invite", page, token=link))
    _set(cookies, page := c.get("/admin"))
    _set(cookies, post_form("/admin/login", page, token="adm"))
    for name in ("capeval_login", "capeval_session", "capeval_admin"):
        header = cookies[name].lower()
        assert "httponly" in header and ("; secure" in header) == secure, header
