"""`capeval serve-model`: any capeval Model behind an OpenAI-compatible HTTP API, with fault injection.

Endpoints: `GET /v1/models`, `POST /v1/completions` (plain-text prompts; `echo` and `logprobs`
for log-likelihood scoring) and `POST /v1/chat/completions` (messages, through the model's chat
template). Model calls are serialized by one lock and run in a worker thread, so the event loop
keeps answering (`/v1/models`, fault responses, other connections) while the model works; with
`max_batch` > 1 (`--max-batch`), generation requests that wait together share one model call.

How prompt log-probabilities are computed (`echo` + `logprobs`). For the hf backend (the bundled
models), one forward pass over the tokens `model.encode` gives the whole text, the same tokens
its `loglikelihood` scores: each token's logprob, and in `top_logprobs` the most likely token at
that position. So the sum over the tokens of a continuation equals the backend's own
log-likelihood of it (to float rounding); answer choices that share a question reuse its KV
cache, so multiple choice through the server costs about what it costs directly. Any other Model exposes `loglikelihood(context,
continuation)` but not its tokenizer; the server then splits the text into pieces (a word or a
punctuation mark with the whitespace before it; see `split_pieces`) and reports, for each piece
after the first, `model.loglikelihood(text before the piece, piece)` as that "token"'s logprob.
By the chain rule the pieces of a continuation sum to its log-likelihood whenever it starts at a
piece boundary (as answers such as " Paris" or " B" do); a piece's `top_logprobs` lists the piece
when greedy decoding would produce it and is empty otherwise (the Model says whether, not what).
This costs one request per piece over all the text before it, so it suits short prompts.

Fault injection (`FaultPlan`) makes chosen requests to the two POST endpoints fail the way real
servers do: `429` (with Retry-After), `500`, `hang` (no answer until the client gives up),
`malformed` (a 200 with truncated JSON), `drop` (the connection closes after the headers),
`400` (a bad-request answer, which a client must not retry), and 200 replies that carry no answer:
`nochoices` (an empty `choices` list), `notext` (a choice without `text`, or a chat message without
`content`), `nulltext` (`text` / `content` null) and `wrongobject` (an `object` of another type).
`empty` is not a fault but a legitimate empty answer (`""` with finish_reason "stop"), which a
client must keep. `ServerStats.answered` counts the model's real (200) answers.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at runtime,
# and the request type is imported inside create_app (fastapi is an optional extra).
import asyncio
import copy
import hashlib
import inspect
import json
import logging
import random
import re
import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from capeval.errors import CapevalError, MissingExtraError
from capeval.models.base import Model
from capeval.types import GenerationParams, Message, Request, Response

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger("capeval.serve")

FAULT_KINDS = ("429", "500", "hang", "malformed", "drop", "400", "nochoices", "notext", "nulltext", "wrongobject", "empty")
# Faults that answer 200 with a body an OpenAI client must treat as broken (and retry).
BROKEN_REPLIES = ("malformed", "nochoices", "notext", "nulltext", "wrongobject")
MODEL_PATHS = ("/v1/completions", "/v1/chat/completions")


# ---- fault injection -----------------------------------------------------------------------
@dataclass
class FaultPlan:
    """Which requests to the model endpoints fail, and how.

    `queued` faults hit the next requests in order, one each; after them, each request fails
    with probability `rate`, with a kind drawn from `kinds`. With `match` set, only requests whose
    JSON body contains that text are eligible (to make one prompt fail while the rest succeed).
    `retry_after` is the 429's Retry-After in seconds; `hang_s` bounds how long a hanging request
    waits for the client to give up. Thread-safe: a test may queue faults while the server runs.
    """

    queued: deque[str] = field(default_factory=deque)
    rate: float = 0.0
    kinds: tuple[str, ...] = ("429", "500")
    retry_after: float = 1.0
    hang_s: float = 60.0
    seed: int | None = None
    match: str | None = None
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        for kind in (*self.queued, *self.kinds):
            _check_kind(kind)
        if not 0.0 <= self.rate <= 1.0:
            raise CapevalError(f"fault rate must be in [0, 1], got {self.rate}")
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)

    def add(self, kind: str, n: int = 1) -> "FaultPlan":
        """Queue `n` faults of `kind` for the next requests."""
        _check_kind(kind)
        with self._lock:
            self.queued.extend([kind] * n)
        return self

    def clear(self) -> None:
        """No more faults: empty the queue, stop random faults, forget the counts."""
        with self._lock:
            self.queued.clear()
            self.rate = 0.0
            self.match = None
            self.injected.clear()

    def next_fault(self, body: bytes = b"") -> str | None:
        """The fault for a request with this body, or None to answer it normally."""
        if self.match is not None and self.match.encode() not in body:
            return None
        with self._lock:
            if self.queued:
                kind: str | None = self.queued.popleft()
            elif self.rate > 0 and self._rng.random() < self.rate:
                kind = self._rng.choice(self.kinds)
            else:
                kind = None
            if kind:
                self.injected[kind] += 1
            return kind

    @classmethod
    def parse(cls, text: str, **options: Any) -> "FaultPlan":
        """`"429x2,500,hang,malformed,drop"`: the faults of the next requests, in order."""
        plan = cls(**options)
        for item in filter(None, (s.strip() for s in text.split(","))):
            kind, _, count = item.partition("x")
            try:
                n = int(count) if count else 1
            except ValueError:
                raise CapevalError(f"bad fault {item!r}", "write KIND or KINDxN, e.g. 429x2,hang") from None
            plan.add(kind, n)
        return plan


def _check_kind(kind: str) -> None:
    if kind not in FAULT_KINDS:
        raise CapevalError(f"unknown fault {kind!r}", f"choose from {', '.join(FAULT_KINDS)}")


@dataclass
class ServerStats:
    """Counts of model-endpoint requests; `max_in_flight` is the most handled at once."""

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    model_calls: int = 0
    skipped: int = 0  # requests whose client had gone before their model call
    answered: int = 0  # requests answered 200 by the model (injected faults not counted)

    def reset(self) -> None:
        self.requests = self.max_in_flight = self.model_calls = self.skipped = self.answered = 0


class _FaultsAndStats:
    """ASGI middleware: counts requests in flight and answers injected faults before the app.

    It is raw ASGI rather than a FastAPI dependency because a dropped connection and a hang that
    ends when the client disconnects need the `send`/`receive` channels themselves."""

    def __init__(self, app: Any, faults: FaultPlan | None = None, stats: ServerStats | None = None) -> None:
        self.app, self.faults, self.stats = app, faults, stats or ServerStats()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in MODEL_PATHS:
            await self.app(scope, receive, send)
            return
        stats = self.stats
        stats.requests += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            fault = None
            if self.faults is not None:
                body, receive = await _buffer_body(receive)
                fault = self.faults.next_fault(body)
            if fault is None:
                await self.app(scope, receive, self._counting(send))
            else:
                log.info("injecting fault %s into %s", fault, scope["path"])
                await self._inject(fault, scope["path"], receive, send)
        finally:
            stats.in_flight -= 1

    def _counting(self, send: Any) -> Any:
        """`send` that counts a 200 answer once its body has gone out."""
        status = [0]

        async def counted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body") and status[0] == 200:
                self.stats.answered += 1

        return counted

    async def _inject(self, fault: str, path: str, receive: Any, send: Any) -> None:
        assert self.faults is not None
        chat = path.endswith("/chat/completions")
        if fault in ("nochoices", "notext", "nulltext", "wrongobject", "empty"):
            choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
            text: dict[str, Any] = {} if fault == "notext" else {"content" if chat else "text": None if fault == "nulltext" else ""}
            if chat:
                choice["message"] = {"role": "assistant", **text}
            else:
                choice.update(text)
            obj = "chat.completion" if chat else "text_completion"
            reply: dict[str, Any] = {
                "id": "injected",
                "object": "error" if fault == "wrongobject" else obj,
                "choices": [] if fault == "nochoices" else [choice],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }
            await _send_json(send, 200, reply)
            return
        if fault == "429":
            await _send_json(
                send,
                429,
                _error_body("injected fault: rate limited", "rate_limit_exceeded"),
                [(b"retry-after", f"{self.faults.retry_after:g}".encode())],
            )
        elif fault == "400":
            await _send_json(send, 400, _error_body("injected fault: bad request", "invalid_request", "invalid_request_error"))
        elif fault == "500":
            await _send_json(send, 500, _error_body("injected fault: internal server error", "server_error"))
        elif fault == "hang":
            # Wait until the client gives up (it disconnects) or hang_s passes.
            try:
                await asyncio.wait_for(_wait_disconnect(receive), self.faults.hang_s)
            except asyncio.TimeoutError:
                await _send_json(send, 504, _error_body("injected fault: hung request", "timeout"))
        elif fault == "malformed":
            body = b'{"id": "cmpl-injected", "object": "text_completion", "choices": [{"text": "trunc'
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
        elif fault == "drop":
            # Headers promise a body that never comes; returning here makes uvicorn close the
            # transport, which the client sees as the peer dropping the connection.
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")]})
            await send({"type": "http.response.body", "body": b'{"id": ', "more_body": True})


async def _buffer_body(receive: Any) -> tuple[bytes, Any]:
    """Read the whole request body; return it and a `receive` that replays it to the app."""
    messages, chunks = [], []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    pending = deque(messages)

    async def replay() -> Any:
        return pending.popleft() if pending else await receive()

    return b"".join(chunks), replay


async def _wait_disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send_json(send: Any, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": data})


def _error_body(message: str, code: str, kind: str = "server_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# ---- prompt log-probabilities ----------------------------------------------------------------
# A word (letters, digits, underscore) or one other non-space character, with the whitespace
# before it; trailing whitespace is a piece of its own.
_PIECE = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")


def split_pieces(text: str) -> list[tuple[int, str]]:
    """(offset, piece) pairs that cover `text` exactly, in order."""
    return [(m.start(), m.group()) for m in _PIECE.finditer(text)]


@dataclass(frozen=True)
class TokenScore:
    """One reported "token" of a scored text: a model token (hf backend) or a text piece."""

    text: str
    offset: int
    logprob: float | None  # None for the first token: nothing precedes it
    top: tuple[str, float] | None  # the most likely token here, where known
    n_tokens: int = 1

    @property
    def top_logprobs(self) -> dict[str, float] | None:
        if self.logprob is None:
            return None
        return dict([self.top]) if self.top else {}


class PieceScorer:
    """Scores text piece by piece through any Model's loglikelihood, caching (prefix, piece).

    One loglikelihood request per piece, each over all the text before it: exact, but its cost
    grows with the square of the prompt's length. The cache makes the shared question of several
    answer choices cost once."""

    def __init__(self, model: Model, cache_size: int = 50_000) -> None:
        self.model = model
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str], tuple[float, bool, int]] = OrderedDict()

    def score(self, text: str, start: int = 0) -> list[TokenScore]:
        """Scores of the pieces of `text[start:]` (offsets into `text`), each given all text before it."""
        pieces = [(start + o, p) for o, p in split_pieces(text[start:])]
        keys = [(hashlib.sha256(text[:o].encode()).hexdigest(), p) for o, p in pieces]
        todo = [i for i, ((o, _), k) in enumerate(zip(pieces, keys)) if o > 0 and k not in self._cache]
        if todo:
            reqs = [Request(kind="loglikelihood", prompt=text[: pieces[i][0]], continuations=(pieces[i][1],)) for i in todo]
            for i, resp in zip(todo, self.model.loglikelihood(reqs)):
                if resp.error:
                    raise CapevalError(f"the model failed to score the prompt: {resp.error}")
                greedy = bool(resp.is_greedy[0]) if resp.is_greedy else False
                self._cache[keys[i]] = (resp.logprobs[0], greedy, resp.n_tokens[0] if resp.n_tokens else 1)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        out = []
        for (o, p), k in zip(pieces, keys):
            if o == 0:
                out.append(TokenScore(p, o, None, None))
                continue
            lp, greedy, n = self._cache[k]
            self._cache.move_to_end(k)
            # The Model says whether greedy decoding gives this piece, not which piece it would give.
            out.append(TokenScore(p, o, lp, (p, lp) if greedy else None, n))
        return out


@dataclass
class _Scored:
    """Per-position results of a forward pass over `ids`; `cache` holds their keys and values."""

    ids: tuple[int, ...]
    own: list[float]  # own[i]: log-probability of ids[i + 1] after ids[: i + 1]
    best: list[int]  # best[i]: the most likely token after ids[: i + 1]
    best_lp: list[float]
    last_logp: Any  # log-probabilities after all of ids (scores the next token)
    cache: Any = None


class HFTokenScorer:
    """Scores text token by token in one forward pass of an hf-backend model.

    The tokens are those `model.encode` gives the whole text, as its loglikelihood uses; each
    token's text runs from the previous token's end offset to its own, so the tokens cover the
    text exactly (a character split over two byte-level tokens gives one of them empty text).

    Answer choices are scored as separate texts that share their question (and few-shot
    exemplars): when a text shares a long token prefix with the text scored before it, that
    prefix's KV cache is kept (a few, least recently used first out), so the next choices only
    run their own last tokens through the model."""

    MIN_PREFIX = 16  # shorter shared prefixes are not worth a cache entry
    MAX_PREFIXES = 4

    def __init__(self, model: Any) -> None:
        self.model = model
        self._prefixes: OrderedDict[tuple[int, ...], _Scored] = OrderedDict()
        self._last: tuple[int, ...] = ()
        self.forward_tokens = 0  # tokens run through the model, to see the cache at work
        params = inspect.signature(model.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    def score(self, text: str, start: int = 0) -> list[TokenScore]:
        m = self.model
        ids = m.encode(text)
        if not ids:
            return []
        offsets = self._offsets(text, ids)
        if len(ids) > m.max_length:
            raise BadRequest(f"the text has {len(ids)} tokens; the model's context window is {m.max_length}")
        scored = self._score_ids(tuple(ids))
        # Special tokens the tokenizer puts before the text (BOS) have no characters: they are
        # context for the first text token, which then gets a log-probability too.
        special = set(m.tokenizer.all_special_ids)
        leading = 0
        while leading < len(ids) and ids[leading] in special and offsets[leading] == (0, 0):
            leading += 1
        out: list[TokenScore] = []
        end = 0
        for i, (_, tok_end) in enumerate(offsets):
            begin, end = end, max(end, tok_end)
            if i < leading or begin < start:
                continue
            piece = text[begin:end]
            if i == 0:
                out.append(TokenScore(piece, begin, None, None))
                continue
            top_id = scored.best[i - 1]
            top_text = piece if top_id == ids[i] else m.tokenizer.decode([top_id])
            out.append(TokenScore(piece, begin, scored.own[i - 1], (top_text, scored.best_lp[i - 1])))
        return out

    def _score_ids(self, ids: tuple[int, ...]) -> _Scored:
        base = max((p for k, p in self._prefixes.items() if len(k) < len(ids) and ids[: len(k)] == k), key=lambda p: len(p.ids), default=None)
        shared = _common_prefix(ids, self._last)
        self._last = ids
        if shared >= self.MIN_PREFIX and shared < len(ids) and shared > (len(base.ids) if base else 0):
            base = self._extend(base, ids[:shared], keep_cache=True)
            self._prefixes[base.ids] = base
            while len(self._prefixes) > self.MAX_PREFIXES:
                self._prefixes.popitem(last=False)
        if base is not None:
            self._prefixes.move_to_end(base.ids)
        return self._extend(base, ids, keep_cache=False)

    def _extend(self, base: _Scored | None, ids: tuple[int, ...], keep_cache: bool) -> _Scored:
        """Scores of `ids`, running only the tokens after `base` (a scored prefix of them)."""
        import torch

        m = self.model
        done = len(base.ids) if base else 0
        kwargs: dict[str, Any] = {"use_cache": keep_cache or base is not None}
        cache = None
        if base is not None:
            cache = copy.deepcopy(base.cache)  # the stored prefix must stay as it is
        elif keep_cache:
            from transformers import DynamicCache

            try:
                cache = DynamicCache(config=m.model.config)
            except TypeError:  # older transformers
                cache = DynamicCache()
        if cache is not None:
            kwargs[self._cache_kw] = cache
        with torch.inference_mode():
            new = torch.tensor([list(ids[done:])], dtype=torch.long, device=m.device)
            logp = torch.log_softmax(m.model(new, **kwargs).logits[0].float(), dim=-1)
            self.forward_tokens += len(ids) - done
            nxt = torch.tensor(list(ids[done + 1 :]), dtype=torch.long, device=logp.device)
            own = logp[: len(nxt)].gather(1, nxt.unsqueeze(1)).squeeze(1).tolist()
            best_lp, best = logp.max(dim=-1)
            first = [] if base is None else [float(base.last_logp[ids[done]])]
            return _Scored(
                ids=ids,
                own=(base.own if base else []) + first + own,
                best=(base.best if base else []) + best.tolist(),
                best_lp=(base.best_lp if base else []) + best_lp.tolist(),
                last_logp=logp[-1].clone(),
                cache=cache if keep_cache else None,
            )

    def _offsets(self, text: str, ids: list[int]) -> list[tuple[int, int]]:
        tok = self.model.tokenizer
        for add in (False, True):
            enc = tok(text, add_special_tokens=add, return_offsets_mapping=True)
            if list(enc["input_ids"]) == list(ids):
                return [(int(a), int(b)) for a, b in enc["offset_mapping"]]
        raise CapevalError("the tokenizer's offsets do not match the model's tokens")


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def prompt_scorer(model: Model) -> PieceScorer | HFTokenScorer:
    """The one-pass token scorer for the hf backend (fast tokenizer with offsets), else pieces."""
    try:
        from capeval.models.hf import HFModel
    except ImportError:
        return PieceScorer(model)
    if isinstance(model, HFModel) and getattr(model.tokenizer, "is_fast", False):
        return HFTokenScorer(model)
    return PieceScorer(model)


# ---- the app --------------------------------------------------------------------------------
class BadRequest(CapevalError):
    """A request the server cannot answer (sent back as HTTP 400)."""


class ModelNotFound(CapevalError):
    """A request naming a model this server does not serve (sent back as HTTP 404)."""


def _params(body: dict[str, Any]) -> GenerationParams:
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_completion_tokens")
    try:
        return GenerationParams(
            max_tokens=16 if max_tokens is None else int(max_tokens),  # 16: the OpenAI default
            temperature=float(body.get("temperature", 1.0)),
            top_p=float(body.get("top_p", 1.0)),
            stop=tuple(str(s) for s in stop),
            seed=None if body.get("seed") is None else int(body["seed"]),
        )
    except (TypeError, ValueError) as e:
        raise BadRequest(f"invalid generation parameter: {e}") from None


def _check_common(body: dict[str, Any]) -> None:
    if body.get("stream"):
        raise BadRequest("stream=true is not supported by capeval serve-model")
    if body.get("n", 1) not in (1, None):
        raise BadRequest("n > 1 is not supported; send the request n times")


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise BadRequest("only text message parts are supported")
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    if content is None:
        return ""
    raise BadRequest(f"unsupported message content: {content!r}")


Gone = Callable[[], Awaitable[bool]]
_Waiter = tuple[list[Request], "asyncio.Future[list[Response]]", "Gone | None"]


class ClientGone(Exception):
    """The client disconnected before its model call started: nothing to answer."""


class ModelRunner:
    """Runs model calls one at a time (a model is not thread-safe, and one call already uses
    every core), in a worker thread so that the event loop keeps answering meanwhile.

    With `max_batch` > 1, generation requests that arrive while the model is busy are answered
    together by one `model.generate` call (up to `max_batch` prompts), as a local run would
    batch them; a batch pads prompts to one length, which can change greedy outputs in rare
    near-ties, so `max_batch=1` gives exactly the answers of one-at-a-time calls."""

    def __init__(self, model: Model, max_batch: int = 1, stats: ServerStats | None = None) -> None:
        if max_batch < 1:
            raise CapevalError(f"max_batch must be at least 1, got {max_batch}")
        self.model = model
        self.max_batch = max_batch
        self.stats = stats or ServerStats()
        self._lock = asyncio.Lock()
        self._waiting: list[_Waiter] = []

    async def run(self, fn: Any, *args: Any, gone: Gone | None = None) -> Any:
        """Call `fn(*args)` in a worker thread once no other model call is running, unless the
        client has gone meanwhile (`gone()`: it timed out and will retry, so the work is wasted)."""
        async with self._lock:
            if gone is not None and await gone():
                self.stats.skipped += 1
                raise ClientGone()
            self.stats.model_calls += 1
            return await asyncio.to_thread(fn, *args)

    async def generate(self, requests: list[Request], gone: Gone | None = None) -> list[Response]:
        future: asyncio.Future[list[Response]] = asyncio.get_running_loop().create_future()
        self._waiting.append((requests, future, gone))
        async with self._lock:
            if not future.done():  # an earlier holder of the lock may have answered us already
                mine = next(i for i, (_, fut, _) in enumerate(self._waiting) if fut is future)
                batch = [self._waiting.pop(mine)]
                size = len(requests)
                while self._waiting and size + len(self._waiting[0][0]) <= self.max_batch:
                    batch.append(self._waiting.pop(0))
                    size += len(batch[-1][0])
                live = []
                for item in batch:
                    if item[2] is not None and await item[2]():
                        self.stats.skipped += 1
                        item[1].set_exception(ClientGone())
                    else:
                        live.append(item)
                if live:
                    await self._generate_batch(live)
        return await future

    async def _generate_batch(self, batch: list[_Waiter]) -> None:
        self.stats.model_calls += 1
        flat = [r for reqs, _, _ in batch for r in reqs]
        try:
            answers = await asyncio.to_thread(self.model.generate, flat)
        except Exception as e:  # noqa: BLE001 - every waiting request must hear of the failure
            for _, fut, _ in batch:
                fut.set_exception(e)
            return
        pos = 0
        for reqs, fut, _ in batch:
            fut.set_result(list(answers[pos : pos + len(reqs)]))
            pos += len(reqs)


def create_app(
    model: Model, faults: FaultPlan | None = None, served_name: str | None = None, max_batch: int = 1
) -> Any:
    """A FastAPI app serving `model` under `served_name` (default: its model_id).

    `max_batch`: see ModelRunner. `app.state.stats` counts requests; `app.state.faults` is the
    fault plan (may be None)."""
    try:
        from fastapi import FastAPI
        from fastapi import Request as HTTPRequest
        from fastapi.responses import JSONResponse
    except ImportError:
        raise MissingExtraError("fastapi", "serve") from None

    name = served_name or model.model_id
    # OpenAI's field for "which backend configuration answered": the served model's full id (its
    # files' fingerprint included) hashed, so clients see when the model behind `name` changes
    fingerprint = "fp_" + hashlib.sha256(model.model_id.encode()).hexdigest()[:12]
    stats = ServerStats()
    scorer = prompt_scorer(model)
    runner = ModelRunner(model, max_batch, stats)
    created = int(time.time())
    app = FastAPI(title=f"capeval serve-model: {name}")
    app.state.stats = stats
    app.state.faults = faults
    app.state.model = model
    app.state.scorer = scorer

    def error(status: int, message: str, code: str, kind: str = "invalid_request_error") -> JSONResponse:
        return JSONResponse(_error_body(message, code, kind), status_code=status)

    async def read_body(req: HTTPRequest) -> dict[str, Any]:
        from starlette.requests import ClientDisconnect

        try:
            body = await req.json()
        except ValueError:
            raise BadRequest("the request body is not valid JSON") from None
        except ClientDisconnect:  # the client gave up (or was killed) while sending
            raise ClientGone() from None
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        asked = body.get("model")
        if asked is not None and asked not in (name, model.model_id):
            raise ModelNotFound(f"The model '{asked}' does not exist; this server serves '{name}'")
        return body

    @app.exception_handler(BadRequest)
    async def _bad_request(_: HTTPRequest, e: BadRequest) -> JSONResponse:
        return error(400, str(e), "invalid_request")

    @app.exception_handler(ModelNotFound)
    async def _not_found(_: HTTPRequest, e: ModelNotFound) -> JSONResponse:
        return error(404, str(e), "model_not_found")

    @app.exception_handler(ClientGone)
    async def _client_gone(_: HTTPRequest, e: ClientGone) -> JSONResponse:
        # 499 (nginx's "client closed request"): nobody is left to read it.
        return error(499, "the client disconnected before its turn", "client_closed_request")

    @app.exception_handler(CapevalError)
    async def _model_error(_: HTTPRequest, e: CapevalError) -> JSONResponse:
        return error(500, str(e), "model_error", "server_error")

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "capeval"}]}

    @app.post("/v1/completions")
    async def completions(req: HTTPRequest) -> JSONResponse:
        body = await read_body(req)
        _check_common(body)
        prompts = body.get("prompt", "")
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise BadRequest("prompt must be a string or a list of strings (token-id prompts are not supported)")
        params = _params(body)
        echo = bool(body.get("echo"))
        want_logprobs = body.get("logprobs") is not None and body.get("logprobs") is not False
        generated: list[Response] = [Response(text="", finish_reason="length") for _ in prompts]
        if params.max_tokens > 0:
            generated = await runner.generate(
                [Request(kind="generate", prompt=p, params=params) for p in prompts], gone=req.is_disconnected
            )
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for i, (prompt, gen) in enumerate(zip(prompts, generated)):
            if gen.error:
                raise CapevalError(f"generation failed: {gen.error}")
            text = (prompt if echo else "") + (gen.text or "")
            logprobs = None
            if want_logprobs:
                full = prompt + (gen.text or "")
                scores = await runner.run(scorer.score, full, 0 if echo else len(prompt), gone=req.is_disconnected)
                logprobs = {
                    "tokens": [s.text for s in scores],
                    "token_logprobs": [s.logprob for s in scores],
                    "top_logprobs": [s.top_logprobs for s in scores],
                    "text_offset": [s.offset for s in scores],
                }
                if params.max_tokens == 0:
                    prompt_tokens += sum(s.n_tokens for s in scores)
            prompt_tokens += gen.prompt_tokens
            completion_tokens += gen.completion_tokens
            choices.append({"index": i, "text": text, "logprobs": logprobs, "finish_reason": gen.finish_reason or "stop"})
        return JSONResponse(
            {
                "id": f"cmpl-{uuid.uuid4().hex[:24]}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": name,
                "system_fingerprint": fingerprint,
                "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
            }
        )

    @app.post("/v1/chat/completions")
    async def chat_completions(req: HTTPRequest) -> JSONResponse:
        body = await read_body(req)
        _check_common(body)
        if body.get("logprobs"):
            raise BadRequest("logprobs on chat completions is not supported; use /v1/completions with echo")
        raw = body.get("messages")
        if not isinstance(raw, list) or not raw:
            raise BadRequest("messages must be a non-empty list")
        messages = tuple(Message(str(m.get("role", "user")), _message_text(m.get("content"))) for m in raw if isinstance(m, dict))
        if len(messages) != len(raw):
            raise BadRequest("every message must be an object with role and content")
        params = _params(body)
        (gen,) = await runner.generate([Request(kind="generate", prompt=messages, params=params)], gone=req.is_disconnected)
        if gen.error:
            raise CapevalError(f"generation failed: {gen.error}")
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": name,
                "system_fingerprint": fingerprint,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text or ""}, "finish_reason": gen.finish_reason or "stop"}],
                "usage": {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens, "total_tokens": gen.prompt_tokens + gen.completion_tokens},
            }
        )

    app.add_middleware(_FaultsAndStats, faults=faults, stats=stats)
    return app


# ---- running it ------------------------------------------------------------------------------
class ServerThread:
    """A uvicorn server in a background thread, for tests and notebooks; `with` stops it."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        import uvicorn

        self.config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=2, lifespan="off")
        self.app = app
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="capeval-serve", daemon=True)
        self.host = host

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self, wait_s: float = 30.0) -> "Self":
        self.thread.start()
        deadline = time.monotonic() + wait_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise CapevalError(f"the model server did not start on {self.host}", "is the port free?")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> "Self":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def serving(
    model: Model, faults: FaultPlan | None = None, served_name: str | None = None, max_batch: int = 1
) -> Iterator[ServerThread]:
    """Serve `model` on a free port of 127.0.0.1 for the duration of a `with` block."""
    server = ServerThread(create_app(model, faults, served_name, max_batch)).start()
    try:
        yield server
    finally:
        server.stop()


def serve(
    model: Model,
    host: str = "127.0.0.1",
    port: int = 8000,
    faults: FaultPlan | None = None,
    served_name: str | None = None,
    max_batch: int = 1,
) -> None:
    """Serve `model` in the foreground until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise MissingExtraError("uvicorn", "serve") from None
    # A bounded graceful shutdown: Ctrl-C should not wait for a long generation to finish.
    app = create_app(model, faults, served_name, max_batch)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
