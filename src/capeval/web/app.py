"""The annotators' web app: rate responses 1-5 with an explanation, vote in blind pairwise battles.

Pages are server-rendered (Jinja2, no scripts, no CDN) and forms are plain urlencoded POSTs.
Every answer is one row in the store: ratings in human_ratings (keyed by run, task and sample,
as the report's judge-vs-human section reads them), votes in pairwise_votes with source "human"
(model names as `capeval arena` reads them, plus the two run ids). Which run is shown as A is
drawn at random per battle and kept server-side, so the page never carries a model name before
the vote. An item is identified by a one-time token handed out with the page; answers to tokens
this app never served, or served to someone else, are refused with a 4xx and a message.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at runtime.
import math
import random
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, select_autoescape

from capeval.errors import MissingExtraError
from capeval.store import Store
from capeval.web.items import Battle, ItemPool, Response

COOKIE = "capeval_annotator"
TEMPLATES = Path(__file__).parent / "templates"
MAX_FORM_BYTES = 64 * 1024
MAX_EXPLANATION = 5000
MAX_NAME = 80
CHOICES = {"A": "model_a", "B": "model_b", "tie": "tie", "bothbad": "tie (bothbad)"}
CHOICE_LABELS = {"A": "A is better", "B": "B is better", "tie": "Tie", "bothbad": "Both are bad"}


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

    def sides(self) -> tuple[Response, Response]:
        assert isinstance(self.item, Battle)
        return (self.item.second, self.item.first) if self.swapped else (self.item.first, self.item.second)


@dataclass
class Session:
    """The app's state besides the store: what was served to whom, and a random source for sides."""

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
            if kind == "rate":
                item: Response | Battle | None = self.pool.next_rating(annotator_id, self.rng)
            else:
                item = self.pool.next_battle(annotator_id, self.rng)
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


def create_app(store: Store, run_ids: list[str], n_bootstrap: int = 500, seed: int | None = None) -> Any:
    """The FastAPI app over the given runs (id prefixes allowed); answers are written to `store`."""
    try:
        from fastapi import FastAPI
        from fastapi import Request as HTTPRequest
        from fastapi.responses import HTMLResponse, RedirectResponse
    except ImportError:
        raise MissingExtraError("fastapi", "web") from None

    session = Session(ItemPool.load(store, run_ids), rng=random.Random(seed))
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))
    app = FastAPI(title="capeval annotation", docs_url=None, redoc_url=None, openapi_url=None)

    def page(template: str, http_status: int = 200, **ctx: Any) -> Any:
        return HTMLResponse(env.get_template(template).render(**ctx), status_code=http_status)

    def annotator(request: Any) -> tuple[str, str] | None:
        aid = request.cookies.get(COOKIE)
        name = store.annotator_name(aid) if aid else None
        return (aid, name) if aid and name is not None else None

    def who(request: Any) -> tuple[str, str]:
        me = annotator(request)
        if me is None:
            raise BadInput(401, "log in first: open the start page and give your name")
        return me

    def common(me: tuple[str, str]) -> dict[str, Any]:
        return {"name": me[1], "progress": session.pool.progress(me[0])}

    @app.exception_handler(BadInput)
    async def bad_input(request: HTTPRequest, exc: BadInput) -> Any:
        me = annotator(request)
        return page("error.html", exc.status, status=exc.status, message=exc.message, **(common(me) if me else {}))

    @app.get("/", response_class=HTMLResponse)
    def index(request: HTTPRequest) -> Any:
        me = annotator(request)
        if me is None:
            return page("login.html")
        pool = session.pool
        return page("index.html", runs=len(pool.run_ids), **common(me))

    @app.post("/login")
    async def login(request: HTTPRequest) -> Any:
        name = (await _form(request)).get("name", "").strip()
        if not name:
            raise BadInput(400, "give your name to start")
        if len(name) > MAX_NAME:
            raise BadInput(400, f"the name is longer than {MAX_NAME} characters")
        aid = store.annotator_for_name(name)
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(COOKIE, aid, httponly=True, samesite="lax")
        return resp

    @app.post("/logout")
    def logout() -> Any:
        resp = RedirectResponse("/", status_code=303)
        resp.delete_cookie(COOKIE)
        return resp

    def item_page(request: Any, kind: str, template: str, fill: Callable[[str, Served], dict[str, Any]]) -> Any:
        """The annotator's open item of this kind, or the page saying they have done them all."""
        me = annotator(request)
        if me is None:
            return RedirectResponse("/", status_code=303)
        got = session.serve(me[0], kind)
        return page(template, **(fill(*got) if got else {}), **common(me))

    @app.get("/rate", response_class=HTMLResponse)
    def rate_page(request: HTTPRequest) -> Any:
        saved = request.query_params.get("saved")
        return item_page(request, "rate", "rate.html", lambda token, s: {"item": s.item, "token": token, "saved": saved})

    @app.post("/rate")
    async def rate(request: HTTPRequest) -> Any:
        me = who(request)
        form = await _form(request)
        with session.lock:
            served = session.claim(me[0], "rate", form.get("item", ""))
            rating = parse_rating(form.get("rating"))
            explanation = parse_explanation(form.get("explanation"), required=True)
            r = served.item
            assert isinstance(r, Response)
            store.add_human_rating(me[0], r.run_id, r.task, r.sample_id, r.model_id, rating, explanation or "")
            session.done(me[0], "rate")
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
        with session.lock:
            served = session.claim(me[0], "battle", form.get("item", ""))
            choice = form.get("choice", "")
            if choice not in CHOICES:
                raise BadInput(400, f"choice '{choice}' is not one of {', '.join(CHOICES)}")
            explanation = parse_explanation(form.get("explanation"), required=False)
            a, b = served.sides()
            battle = served.item
            assert isinstance(battle, Battle)
            store.add_pairwise_vote(
                a.model_id, b.model_id, CHOICES[choice], source="human", annotator_id=me[0],
                prompt_id=battle.prompt_id, run_a=a.run_id, run_b=b.run_id, explanation=explanation,
            )
            session.done(me[0], "battle")
        # the vote is in: now the page may say which model wrote which side
        return page("voted.html", sides=(a, b), choice=CHOICE_LABELS[choice], **common(me))

    @app.get("/leaderboard", response_class=HTMLResponse)
    def leaderboard(request: HTTPRequest) -> Any:
        from capeval.analysis.arena import ArenaError, arena_leaderboard
        from capeval.analysis.tables import battles_from_store

        me = annotator(request)
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

    return app


def serve(store: Store, run_ids: list[str], host: str = "127.0.0.1", port: int = 8000, n_bootstrap: int = 500) -> None:
    """Serve the app in the foreground until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise MissingExtraError("uvicorn", "web") from None
    app = create_app(store, run_ids, n_bootstrap=n_bootstrap)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
