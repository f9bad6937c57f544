"""The annotators' web app: rate responses 1-5 with an explanation, vote in blind pairwise battles.

Pages are server-rendered (Jinja2, no scripts, no CDN) and forms are plain urlencoded POSTs.
Every answer is one row in the store: ratings in human_ratings (keyed by run, task and sample,
as the report's judge-vs-human section reads them), votes in pairwise_votes with source "human"
(model names as `capeval arena` reads them, plus the two run ids). Which run is shown as A is
drawn at random per battle and kept server-side, so the page never carries a model name before
the vote. An item is identified by a one-time token handed out with the page; answers to tokens
this app never served, or served to someone else, are refused with a 4xx and a message.

Annotators are created beforehand (`capeval annotators add`) and sign in with their invite link or
password (capeval.web.auth); a session lasts `session_hours` and every form carries the session's
CSRF token. Each annotator's answers are rate-limited and may have a quota. The admin page (token
from `capeval annotate`) lists annotators with their counts and their agreement.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at runtime.
import math
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, select_autoescape

from capeval.errors import MissingExtraError
from capeval.store import Store
from capeval.web import auth
from capeval.web.items import Battle, ItemPool, Response

SESSION_COOKIE = "capeval_session"
LOGIN_COOKIE = "capeval_login"  # double-submit CSRF token of the sign-in forms (there is no session yet)
ADMIN_COOKIE = "capeval_admin"
TEMPLATES = Path(__file__).parent / "templates"
MAX_FORM_BYTES = 64 * 1024
MAX_EXPLANATION = 5000
LOGIN_ATTEMPTS = 10
CHOICES = {"A": "model_a", "B": "model_b", "tie": "tie", "bothbad": "tie (bothbad)"}
CHOICE_LABELS = {"A": "A is better", "B": "B is better", "tie": "Tie", "bothbad": "Both are bad"}
# No scripts at all, styles inline, forms only to this app, never framed, invite tokens never sent as Referer.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


class BadInput(Exception):
    """An annotator's request the app refuses: HTTP status and a message the page shows."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Served:
    """An item handed to one annotator, waiting for their answer."""

    annotator_id: str
    kind: str  # "rate" or "battle"
    item: Response | Battle
    swapped: bool = False  # battle: the pool's second run is shown as A

    @property
    def key(self) -> tuple[str, ...]:
        """The item as the pool counts answers to it."""
        if isinstance(self.item, Battle):
            return self.item.key
        return (self.item.run_id, self.item.task, self.item.sample_id)

    def sides(self) -> tuple[Response, Response]:
        assert isinstance(self.item, Battle)
        return (self.item.second, self.item.first) if self.swapped else (self.item.first, self.item.second)


@dataclass
class Assignments:
    """What was served to whom (besides the store), and a random source for sides."""

    pool: ItemPool
    rng: random.Random = field(default_factory=random.Random)
    served: dict[str, Served] = field(default_factory=dict)
    pending: dict[tuple[str, str], str] = field(default_factory=dict)  # (annotator, kind) -> token
    lock: threading.RLock = field(default_factory=threading.RLock)

    def serve(self, annotator_id: str, kind: str) -> tuple[str, Served] | None:
        """The annotator's open item of this kind (a reload shows the same one), else the next one."""
        with self.lock:
            token = self.pending.get((annotator_id, kind))
            if token is not None:
                return token, self.served[token]
            # items open on other people's pages count as answered, so people arriving together spread out
            busy: Counter[Any] = Counter(self.served[t].key for (_, k), t in self.pending.items() if k == kind)
            if kind == "rate":
                item: Response | Battle | None = self.pool.next_rating(annotator_id, self.rng, busy)
            else:
                item = self.pool.next_battle(annotator_id, self.rng, busy)
            if item is None:
                return None
            token = secrets.token_urlsafe(12)
            served = Served(annotator_id, kind, item, swapped=kind == "battle" and self.rng.random() < 0.5)
            self.served[token] = served
            self.pending[(annotator_id, kind)] = token
            return token, served

    def claim(self, annotator_id: str, kind: str, token: str) -> Served:
        """The served item this answer is for; refuses tokens never served, served to someone else, or answered."""
        served = self.served.get(token)
        if served is None or served.kind != kind:
            raise BadInput(
                404, f"unknown {'rating item' if kind == 'rate' else 'battle'}: it was not served by this app "
                "(or the app was restarted); open the page again for a new one"
            )
        if served.annotator_id != annotator_id:
            raise BadInput(403, "this item was served to another annotator, not to you")
        if self.pending.get((annotator_id, kind)) != token:
            raise BadInput(409, "you already answered this item; each item is answered once")
        return served

    def done(self, annotator_id: str, kind: str) -> None:
        self.pending.pop((annotator_id, kind), None)


async def _form(request: Any) -> dict[str, str]:
    """An urlencoded form body as {field: last value} (no python-multipart needed)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise BadInput(415, f"send the form as application/x-www-form-urlencoded, not {ctype or 'no content type'}")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise BadInput(413, f"the form is larger than {MAX_FORM_BYTES // 1024} KiB")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise BadInput(400, "the form is not valid UTF-8") from None
    return {k: v[-1] for k, v in fields.items()}


def parse_rating(value: str | None) -> int:
    text = (value or "").strip()
    if not text:
        raise BadInput(400, "a rating is required: a whole number from 1 to 5")
    try:
        number = float(text)
    except ValueError:
        raise BadInput(400, f"rating '{text}' is not a number: give a whole number from 1 to 5") from None
    if not math.isfinite(number) or number != int(number) or not 1 <= number <= 5:
        raise BadInput(400, f"rating {text} is outside 1-5: give a whole number from 1 to 5")
    return int(number)


def parse_explanation(value: str | None, required: bool) -> str | None:
    text = (value or "").strip()
    if not text:
        if required:
            raise BadInput(400, "an explanation is required: say in a sentence why you gave this rating")
        return None
    if len(text) > MAX_EXPLANATION:
        raise BadInput(400, f"the explanation is longer than {MAX_EXPLANATION} characters")
    return text


@dataclass
class Limits:
    """How much each annotator may answer: `rate_limit` answers per minute, at most `quota` answers in all
    (an annotator's own quota from `capeval annotators add --quota` comes first; None: no limit)."""

    rate_limit: int = 30
    quota: int | None = None
    session_hours: float = 12.0
    # cookies only over HTTPS: always (TLS ends at a proxy on another machine), else whenever the
    # request came over HTTPS (directly, or through a trusted proxy's X-Forwarded-Proto)
    secure_cookies: bool = False


def create_app(
    store: Store,
    run_ids: list[str],
    n_bootstrap: int = 500,
    seed: int | None = None,
    admin_token: str | None = None,
    limits: Limits | None = None,
    clock: Callable[[], float] = time.time,
) -> Any:
    """The FastAPI app over the given runs (id prefixes allowed); answers are written to `store`.

    `admin_token` opens the admin page (none: the page is off); `clock` (seconds) times sessions and
    rate limits, so tests can move it."""
    try:
        from fastapi import FastAPI
        from fastapi import Request as HTTPRequest
        from fastapi.responses import HTMLResponse, RedirectResponse
    except ImportError:
        raise MissingExtraError("fastapi", "web") from None

    limits = limits or Limits()
    desk = Assignments(ItemPool.load(store, run_ids), rng=random.Random(seed))
    limiter = auth.RateLimiter(limits.rate_limit, 60.0, clock)
    # password guesses: at most LOGIN_ATTEMPTS a minute per name, whoever sends them
    login_limiter = auth.RateLimiter(LOGIN_ATTEMPTS, 60.0, clock)
    ttl_s = limits.session_hours * 3600
    admin_hash = auth.token_hash(admin_token) if admin_token else None
    admin_sessions: dict[str, float] = {}  # sha256 of an admin cookie -> expiry
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))
    env.filters["utc"] = lambda t: time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))
    app = FastAPI(title="capeval annotation", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def security_headers(request: HTTPRequest, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    def secure(request: Any) -> bool:
        return limits.secure_cookies or request.url.scheme == "https"

    def page(template: str, http_status: int = 200, **ctx: Any) -> Any:
        return HTMLResponse(env.get_template(template).render(**ctx), status_code=http_status)

    def sign_in_page(request: Any, template: str, http_status: int = 200, **ctx: Any) -> Any:
        """A page with a sign-in form: its CSRF token is also set as a cookie, which the POST must echo."""
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        resp = page(template, http_status, login_csrf=token, **ctx)
        resp.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=secure(request))
        return resp

    def check_login_csrf(request: Any, form: dict[str, str]) -> None:
        cookie, given = request.cookies.get(LOGIN_COOKIE), form.get("csrf", "")
        if not cookie or not given or not auth.same_secret(given, cookie):
            raise BadInput(403, "the sign-in form is stale or was not sent from this app: open the page again")

    def signed_in(request: Any) -> auth.SignedIn | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        return auth.session_of(store, cookie, clock()) if cookie else None

    def who(request: Any) -> auth.SignedIn:
        me = signed_in(request)
        if me is None:
            expired = request.cookies.get(SESSION_COOKIE) is not None
            raise BadInput(
                401, ("your session has expired" if expired else "sign in first")
                + ": open your invite link, or sign in with your name and password on the start page",
            )
        return me

    def check_csrf(me: auth.SignedIn, form: dict[str, str]) -> None:
        given = form.get("csrf", "")
        if not given:
            raise BadInput(403, "the form carries no CSRF token: answer from the app's own page")
        if not auth.same_secret(given, me.csrf):
            raise BadInput(403, "the form's CSRF token is not this session's: reload the page and answer again")

    def answers(annotator_id: str) -> int:
        """Every answer this annotator gave, in any session: what a quota counts."""
        rows = store.query(
            "SELECT (SELECT COUNT(*) FROM human_ratings WHERE annotator_id = ?) "
            "+ (SELECT COUNT(*) FROM pairwise_votes WHERE source = 'human' AND annotator_id = ?) AS n",
            (annotator_id, annotator_id),
        )
        return int(rows[0]["n"])

    def quota_of(me: auth.SignedIn) -> int | None:
        return me.annotator.quota if me.annotator.quota is not None else limits.quota

    def quota_left(me: auth.SignedIn) -> bool:
        quota = quota_of(me)
        return quota is None or answers(me.annotator.annotator_id) < quota

    def check_may_answer(me: auth.SignedIn) -> None:
        wait = limiter.wait_s(me.annotator.annotator_id)
        if wait > 0:
            raise BadInput(429, f"you are answering faster than {limits.rate_limit} per minute: wait {math.ceil(wait)} s and send it again")
        if not quota_left(me):
            raise BadInput(403, f"you have reached your quota of {quota_of(me)} answers: thank you!")

    def common(me: auth.SignedIn) -> dict[str, Any]:
        return {"name": me.annotator.name, "csrf": me.csrf, "progress": desk.pool.progress(me.annotator.annotator_id)}

    def start_session(request: Any, annotator: auth.Annotator) -> Any:
        cookie, _ = auth.open_session(store, annotator, ttl_s, clock())
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(SESSION_COOKIE, cookie, max_age=int(ttl_s), httponly=True, samesite="lax", secure=secure(request))
        resp.delete_cookie(LOGIN_COOKIE)
        return resp

    @app.exception_handler(BadInput)
    async def bad_input(request: HTTPRequest, exc: BadInput) -> Any:
        me = signed_in(request)
        return page("error.html", exc.status, status=exc.status, message=exc.message, **(common(me) if me else {}))

    @app.get("/", response_class=HTMLResponse)
    def index(request: HTTPRequest) -> Any:
        me = signed_in(request)
        if me is None:
            return sign_in_page(request, "login.html", expired=request.cookies.get(SESSION_COOKIE) is not None)
        return page("index.html", runs=len(desk.pool.run_ids), **common(me))

    @app.get("/invite/{token}", response_class=HTMLResponse)
    def invite_page(request: HTTPRequest, token: str) -> Any:
        annotator = auth.by_invite(store, token)
        if annotator is None:
            raise BadInput(404, "this invite link is not valid (it may have been replaced by a newer one): ask for a new link")
        return sign_in_page(request, "invite.html", invited=annotator.name, token=token)

    @app.post("/invite")
    async def invite(request: HTTPRequest) -> Any:
        form = await _form(request)
        check_login_csrf(request, form)
        annotator = auth.by_invite(store, form.get("token", ""))
        if annotator is None:
            raise BadInput(404, "this invite link is not valid (it may have been replaced by a newer one): ask for a new link")
        return start_session(request, annotator)

    @app.post("/login")
    async def login(request: HTTPRequest) -> Any:
        form = await _form(request)
        check_login_csrf(request, form)
        name, password = form.get("name", "").strip(), form.get("password", "")
        if not name or not password:
            raise BadInput(400, "give your name and password to sign in (or open your invite link)")
        if len(name) > auth.MAX_NAME:
            raise BadInput(400, f"the name is longer than {auth.MAX_NAME} characters")
        wait = login_limiter.wait_s(name.casefold())
        if wait > 0:
            raise BadInput(429, f"too many sign-in attempts for this name: wait {math.ceil(wait)} s")
        annotator = auth.by_password(store, name, password)
        if annotator is None:
            raise BadInput(403, "wrong name or password")
        return start_session(request, annotator)

    @app.post("/logout")
    async def logout(request: HTTPRequest) -> Any:
        me = who(request)
        check_csrf(me, await _form(request))
        auth.close_session(store, request.cookies[SESSION_COOKIE])
        resp = RedirectResponse("/", status_code=303)
        resp.delete_cookie(SESSION_COOKIE)
        return resp

    def item_page(request: Any, kind: str, template: str, fill: Callable[[str, Served], dict[str, Any]], **ctx: Any) -> Any:
        """The annotator's open item of this kind, or the page saying they have done them all."""
        me = signed_in(request)
        if me is None:
            return RedirectResponse("/", status_code=303)
        if not quota_left(me):
            return page(template, quota_reached=quota_of(me), **ctx, **common(me))
        got = desk.serve(me.annotator.annotator_id, kind)
        return page(template, **(fill(*got) if got else {}), **ctx, **common(me))

    @app.get("/rate", response_class=HTMLResponse)
    def rate_page(request: HTTPRequest) -> Any:
        # "saved" also on the last item's page: the annotator sees that their last rating counted
        return item_page(request, "rate", "rate.html", lambda token, s: {"item": s.item, "token": token}, saved=request.query_params.get("saved"))

    @app.post("/rate")
    async def rate(request: HTTPRequest) -> Any:
        me = who(request)
        form = await _form(request)
        check_csrf(me, form)
        aid = me.annotator.annotator_id
        with desk.lock:
            served = desk.claim(aid, "rate", form.get("item", ""))
            check_may_answer(me)
            rating = parse_rating(form.get("rating"))
            explanation = parse_explanation(form.get("explanation"), required=True)
            r = served.item
            assert isinstance(r, Response)
            store.add_human_rating(aid, r.run_id, r.task, r.sample_id, r.model_id, rating, explanation or "")
            desk.done(aid, "rate")
        return RedirectResponse("/rate?saved=1", status_code=303)

    @app.get("/battle", response_class=HTMLResponse)
    def battle_page(request: HTTPRequest) -> Any:
        return item_page(
            request, "battle", "battle.html", lambda token, s: {"sides": s.sides(), "token": token, "choices": CHOICE_LABELS}
        )

    @app.post("/battle", response_class=HTMLResponse)
    async def vote(request: HTTPRequest) -> Any:
        me = who(request)
        form = await _form(request)
        check_csrf(me, form)
        aid = me.annotator.annotator_id
        with desk.lock:
            served = desk.claim(aid, "battle", form.get("item", ""))
            check_may_answer(me)
            choice = form.get("choice", "")
            if choice not in CHOICES:
                raise BadInput(400, f"choice '{choice}' is not one of {', '.join(CHOICES)}")
            explanation = parse_explanation(form.get("explanation"), required=False)
            a, b = served.sides()
            battle = served.item
            assert isinstance(battle, Battle)
            store.add_pairwise_vote(
                a.model_id, b.model_id, CHOICES[choice], source="human", annotator_id=aid,
                prompt_id=battle.prompt_id, run_a=a.run_id, run_b=b.run_id, explanation=explanation,
            )
            desk.done(aid, "battle")
        # the vote is in: now the page may say which model wrote which side
        return page("voted.html", sides=(a, b), choice=CHOICE_LABELS[choice], **common(me))

    @app.get("/leaderboard", response_class=HTMLResponse)
    def leaderboard(request: HTTPRequest) -> Any:
        from capeval.analysis.arena import ArenaError, arena_leaderboard
        from capeval.analysis.tables import battles_from_store

        me = signed_in(request)
        battles = battles_from_store(store, "human")
        board, problem = None, None
        if len({m for b in battles for m in (b.model_a, b.model_b)}) < 2:
            problem = "no human votes yet: vote in a few battles first"
        else:
            try:
                board = arena_leaderboard(battles, n_bootstrap=n_bootstrap, seed=0)
            except ArenaError as e:
                problem = str(e)
        return page("leaderboard.html", board=board, problem=problem, n_bootstrap=n_bootstrap, **(common(me) if me else {}))

    def is_admin(request: Any) -> bool:
        if admin_hash is None:
            raise BadInput(404, "the admin page is off: start `capeval annotate` with an admin token")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer ") and auth.same_secret(auth.token_hash(header[7:].strip()), admin_hash):
            return True
        cookie = request.cookies.get(ADMIN_COOKIE)
        return bool(cookie) and admin_sessions.get(auth.token_hash(cookie), 0.0) > clock()

    @app.get("/admin", response_class=HTMLResponse)
    def admin(request: HTTPRequest) -> Any:
        if not is_admin(request):
            return sign_in_page(request, "admin_login.html", 401)
        from capeval.analysis.agreement import annotator_labels, rating_agreement

        run_ids = desk.pool.run_ids
        people = auth.annotator_counts(store, run_ids)
        labels = annotator_labels((p.annotator_id, p.name) for p in people)
        marks = ",".join("?" * len(run_ids))
        rows = store.query(
            f"SELECT run_id, task, sample_id, annotator_id, rating FROM human_ratings WHERE run_id IN ({marks}) "
            "AND annotator_id IS NOT NULL ORDER BY rating_id",
            run_ids,
        )
        agreement = rating_agreement(
            ((r["run_id"], r["task"], r["sample_id"]), labels.get(r["annotator_id"], r["annotator_id"]), r["rating"]) for r in rows
        )
        return page("admin.html", people=people, agreement=agreement, limits=limits, runs=len(run_ids), finite=math.isfinite)

    @app.post("/admin/login")
    async def admin_login(request: HTTPRequest) -> Any:
        form = await _form(request)
        check_login_csrf(request, form)
        if admin_hash is None:
            raise BadInput(404, "the admin page is off: start `capeval annotate` with an admin token")
        if not auth.same_secret(auth.token_hash(form.get("token", "").strip()), admin_hash):
            raise BadInput(403, "wrong admin token: `capeval annotate` printed it when it started")
        cookie = secrets.token_urlsafe(auth.SESSION_BYTES)
        admin_sessions[auth.token_hash(cookie)] = clock() + ttl_s
        resp = RedirectResponse("/admin", status_code=303)
        resp.set_cookie(
            ADMIN_COOKIE, cookie, max_age=int(ttl_s), httponly=True, samesite="strict", secure=secure(request)
        )
        return resp

    return app


def serve(
    store: Store,
    run_ids: list[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    n_bootstrap: int = 500,
    admin_token: str | None = None,
    limits: Limits | None = None,
) -> None:
    """Serve the app in the foreground until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise MissingExtraError("uvicorn", "web") from None
    app = create_app(store, run_ids, n_bootstrap=n_bootstrap, admin_token=admin_token, limits=limits)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
