"""The FastAPI app of `capeval serve-model` and the thread that serves it."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at runtime,
# and the request type is imported inside create_app (fastapi is an optional extra).

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from capeval.errors import CapevalError, MissingExtraError
from capeval.models.base import Model
from capeval.models.serve.faults import FaultPlan, FaultsAndStats, ServerStats
from capeval.models.serve.prompt_logprobs import prompt_scorer
from capeval.models.serve.protocol import (
    BadRequest,
    ModelNotFound,
    check_common,
    error_body,
    generation_params,
    message_text,
)
from capeval.models.serve.runner import ClientGone, ModelRunner
from capeval.types import Message, Request, Response

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger("capeval.serve")


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
        return JSONResponse(error_body(message, code, kind), status_code=status)

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
        check_common(body)
        prompts = body.get("prompt", "")
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise BadRequest("prompt must be a string or a list of strings (token-id prompts are not supported)")
        params = generation_params(body)
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
        check_common(body)
        if body.get("logprobs"):
            raise BadRequest("logprobs on chat completions is not supported; use /v1/completions with echo")
        raw = body.get("messages")
        if not isinstance(raw, list) or not raw:
            raise BadRequest("messages must be a non-empty list")
        messages = tuple(Message(str(m.get("role", "user")), message_text(m.get("content"))) for m in raw if isinstance(m, dict))
        if len(messages) != len(raw):
            raise BadRequest("every message must be an object with role and content")
        params = generation_params(body)
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

    app.add_middleware(FaultsAndStats, faults=faults, stats=stats)
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
