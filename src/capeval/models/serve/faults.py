"""Fault injection for `capeval serve-model`: a plan of failures real servers produce, and the request counts."""

import asyncio
import json
import logging
import random
import threading
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from capeval.errors import CapevalError
from capeval.models.serve.protocol import error_body

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


class FaultsAndStats:
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
                error_body("injected fault: rate limited", "rate_limit_exceeded"),
                [(b"retry-after", f"{self.faults.retry_after:g}".encode())],
            )
        elif fault == "400":
            await _send_json(send, 400, error_body("injected fault: bad request", "invalid_request", "invalid_request_error"))
        elif fault == "500":
            await _send_json(send, 500, error_body("injected fault: internal server error", "server_error"))
        elif fault == "hang":
            # Wait until the client gives up (it disconnects) or hang_s passes.
            try:
                await asyncio.wait_for(_wait_disconnect(receive), self.faults.hang_s)
            except asyncio.TimeoutError:
                await _send_json(send, 504, error_body("injected fault: hung request", "timeout"))
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
