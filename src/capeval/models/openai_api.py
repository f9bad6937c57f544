"""The `openai` backend: any OpenAI-compatible server, async with bounded concurrency and retries.

Spec: `openai:<model>` or `openai:<model>@<base_url>`. Chat prompts (Message tuples) go to
`/chat/completions`; plain-text prompts go to `/completions` (or, with `string_prompts="chat"`,
to `/chat/completions` as one user message). Log-likelihood uses `/completions` with
`echo=True, logprobs=1, max_tokens=0` on prompt + continuation and sums the log-probabilities of
the tokens that lie in the continuation, located by their `text_offset`.

Requests stream (`OpenAIModel.stream`): `concurrency` calls stay on the wire, the next starting the
moment one ends, and answers come back in completion order, so the engine saves them as they arrive.
Transient failures (429, 5xx, timeouts, connection errors, and malformed replies: invalid or
truncated JSON, a body its Content-Encoding does not decode, no choices, a choice without text or
with null content, a wrong `object` type) are retried with exponential backoff and jitter,
honouring Retry-After; a request that still fails is answered with `Response(error=...)` so that
the engine keeps every finished answer and a re-run retries only it. An empty string with a
finish_reason is a real (empty) answer and is kept, but a reply whose finish_reason is
`content_filter` (the server withheld the answer) is a failed call, not retried; an unpaired
UTF-16 surrogate in a reply's text (half an emoji) is kept as U+FFFD; a `usage` count that is not
a number is left out (0).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import queue
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from capeval.errors import ModelError, UnsupportedRequestError
from capeval.interrupts import Interrupted
from capeval.models.base import register_backend, sampling_seed
from capeval.types import Message, Request, Response

log = logging.getLogger("capeval.models.openai")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Connections per HTTP client in a stream (see _Wire).
WIRE_SHARD = 16
# While no call finishes, `stream` yields None this often (seconds) so its caller stays responsive.
TICK_S = 0.1
# The `object` field an OpenAI-style server puts in each endpoint's reply (where it sends one).
REPLY_OBJECT = {"/completions": "text_completion", "/chat/completions": "chat.completion"}

# Statuses after which waiting and sending the same request again can succeed.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
# Statuses that mean every request of the run would fail the same way: stop the run with the
# server's message instead of answering each request with the same error.
FATAL_STATUS = frozenset({401, 403, 404})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait between attempts.

    Attempt n (0-based) waits `min(backoff_max, backoff_base * 2**n)` scaled by a random factor
    in [0.5, 1] ("equal jitter": spread out, never much shorter than planned), unless the server
    sent Retry-After, which is honoured exactly (up to `max_retry_after`).
    """

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 300.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(max(0.0, retry_after), self.max_retry_after)
        planned = min(self.backoff_max, self.backoff_base * (2**attempt))
        return planned * (0.5 + 0.5 * rng.random())


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _Transient(Exception):
    """One failed attempt that may succeed if sent again."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Rejected(Exception):
    """The server refused this request (4xx other than 429): sending it again cannot help."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class _GaveUp(Exception):
    """All attempts failed."""


def _server_message(resp: httpx.Response) -> str:
    """The error text an OpenAI-style server puts in its body ({"error": {"message": ...}})."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:500] or resp.reason_phrase
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body))
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err)
    return str(body)[:500]


class _Wire:
    """The HTTP side of a stream: at most `concurrency` requests on the wire (a slot is held only
    while a request is sent and answered, not while it backs off), spread over several clients
    of at most WIRE_SHARD connections each.

    Why several: httpcore's connection pool does work quadratic in its connections at every
    request start and end; at 128 connections in one pool that cost about 13 ms of CPU per call
    (bench/api_throughput.py), which capped a run at a seventh of the concurrency's bound. Each
    call goes to the least busy client, so no client ever has more requests than connections."""

    def __init__(self, concurrency: int, timeout: float, headers: dict[str, str], tls: ssl.SSLContext) -> None:
        n = -(-concurrency // WIRE_SHARD)
        per = -(-concurrency // n)
        limits = httpx.Limits(max_connections=per, max_keepalive_connections=per)
        self.clients = [httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers, verify=tls) for _ in range(n)]
        self.busy = [0] * n
        self.sem = asyncio.Semaphore(concurrency)

    async def post(self, url: str, body: dict[str, Any], timeout: float) -> tuple[httpx.Response, float]:
        """One attempt: (response, seconds it took). The whole attempt is bounded by `timeout`
        (httpx's own timeout bounds each read only), so a server that trickles bytes or never
        answers is abandoned too."""
        async with self.sem:
            k = min(range(len(self.busy)), key=self.busy.__getitem__)
            self.busy[k] += 1
            try:
                start = time.monotonic()
                resp = await asyncio.wait_for(self.clients[k].post(url, json=body), timeout)
                return resp, time.monotonic() - start
            finally:
                self.busy[k] -= 1

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.clients), return_exceptions=True)


def _stop_scheduler(control: dict[str, Any], thread: threading.Thread) -> None:
    """Cancel the scheduler's main task (abandoning the calls in flight) and wait for its thread."""
    loop, main = control.get("loop"), control.get("main")
    if loop is not None and main is not None and thread.is_alive():
        try:
            loop.call_soon_threadsafe(main.cancel)
        except RuntimeError:  # the loop closed meanwhile
            pass
    thread.join(timeout=10)


class OpenAIModel:
    """A model behind an OpenAI-compatible HTTP API (OpenAI, vLLM serve, llama.cpp server,
    `capeval serve-model`, ...).

    Log-likelihood responses count `n_tokens` in the server's tokens (for `capeval serve-model`,
    its text pieces); `latency_s` is the time of the attempt that succeeded, not of the retries.
    `n_attempts` and `n_retries` count HTTP attempts and retries since the model was made,
    `n_answered` the calls that ended with an answer (or a failed call's error) in hand.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        concurrency: int = 8,
        max_retries: int = 5,
        timeout: float = 120.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        string_prompts: Literal["completions", "chat"] = "completions",
        jitter_seed: int | None = None,
    ) -> None:
        if not model:
            raise ModelError("the openai backend needs a model name", "use --model openai:<model name>")
        if concurrency < 1:
            raise ModelError(f"concurrency must be at least 1, got {concurrency}")
        if string_prompts not in ("completions", "chat"):
            raise ModelError(
                f"string_prompts must be 'completions' or 'chat', got {string_prompts!r}",
                "'chat' sends each plain-text prompt as one user message",
            )
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.concurrency = concurrency
        self.timeout = timeout
        self.policy = RetryPolicy(max_retries=max_retries, backoff_base=backoff_base, backoff_max=backoff_max)
        self.string_prompts = string_prompts
        self._rng = random.Random(jitter_seed)
        self._tls: ssl.SSLContext | None = None  # loading the CA bundle takes ~35 ms: once per model
        # Counters a user (or a test) can read after a run.
        self.n_attempts = 0
        self.n_retries = 0
        self.n_answered = 0
        self._score_max_tokens = 0  # becomes 1 for servers that refuse to generate nothing
        self._chat_limit_field = "max_tokens"  # or max_completion_tokens, if the server asks for it
        # The same model name on two servers may be two different models, so the id names the
        # server; sending plain prompts as chat changes their answers, so that is named too.
        self.model_id = f"openai:{model}@{self.base_url}" + ("|string_prompts=chat" if string_prompts == "chat" else "")

    # ---- the Model protocol ----------------------------------------------------------------
    def generate(self, requests: Sequence[Request]) -> list[Response]:
        return self._answer_all(requests)

    def loglikelihood(self, requests: Sequence[Request]) -> list[Response]:
        return self._answer_all(requests)

    def stream(self, requests: Sequence[Request]) -> Iterator[tuple[int, Response] | None]:
        """Answer `requests` (any mix of kinds) as they finish: yields `(index, response)` in
        completion order, and `None` every `TICK_S` while nothing finishes, so the caller can save
        answers and notice interrupts. `concurrency` calls are on the wire at all times: the next
        one starts the moment one ends, so a slow call holds one slot, never the others. Closing
        the iterator abandons the calls in flight. Throwing `capeval.interrupts.Interrupted` into
        it (the engine does on Ctrl-C) abandons them too, then yields every answer already received
        but not yet yielded, then raises the Interrupted again: nothing the server answered is lost.
        A configuration error (wrong key, unknown model, no prompt logprobs) is raised here, after
        the answers already yielded."""
        if not requests:
            return
        answers: queue.SimpleQueue[Any] = queue.SimpleQueue()
        control: dict[str, Any] = {}
        started = threading.Event()

        def loop_thread() -> None:
            try:
                asyncio.run(self._schedule(requests, answers, control, started))
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                answers.put(e)
            finally:
                started.set()

        # The event loop runs in its own thread, so this works from synchronous code and from
        # inside a running loop (a notebook, an async web handler) alike.
        thread = threading.Thread(target=loop_thread, name="capeval-openai", daemon=True)
        thread.start()
        started.wait()
        remaining = len(requests)
        try:
            while remaining:
                try:
                    item = answers.get(timeout=TICK_S)
                except queue.Empty:
                    if not thread.is_alive() and answers.empty():
                        raise ModelError(f"{self.model_id}: the request scheduler stopped with {remaining} calls unanswered") from None
                    yield None
                    continue
                if isinstance(item, BaseException):
                    raise item
                remaining -= 1
                yield item
        except Interrupted:
            # Stop: abandon the calls in flight, then hand over the answers already received
            # (those the scheduler queued and those finished while it was being stopped).
            _stop_scheduler(control, thread)
            while True:
                try:
                    held = answers.get_nowait()
                except queue.Empty:
                    break
                if isinstance(held, tuple):
                    yield held
            raise
        finally:
            _stop_scheduler(control, thread)

    # ---- scheduling ------------------------------------------------------------------------
    def _answer_all(self, requests: Sequence[Request]) -> list[Response]:
        out: list[Response | None] = [None] * len(requests)
        for item in self.stream(requests):
            if item is not None:
                out[item[0]] = item[1]
        return [r if r is not None else Response(error="not answered") for r in out]

    async def _schedule(
        self, requests: Sequence[Request], answers: queue.SimpleQueue[Any], control: dict[str, Any], started: threading.Event
    ) -> None:
        control["loop"], control["main"] = asyncio.get_running_loop(), asyncio.current_task()
        started.set()
        # The wire admits `concurrency` calls; a few more are started than it admits, so that a
        # call backing off after a 429 or 5xx gives its slot to the next one instead of idling it.
        window = 2 * self.concurrency + 8
        todo = iter(enumerate(requests))
        running: dict[asyncio.Future[Any], int] = {}
        # Finished calls arrive here through their done callbacks: O(1) per call, whatever the window.
        finished: asyncio.Queue[asyncio.Future[Any]] = asyncio.Queue()
        if self._tls is None:
            self._tls = httpx.create_ssl_context()  # httpx's default: certifi, or $SSL_CERT_FILE / $SSL_CERT_DIR
        wire = _Wire(self.concurrency, self.timeout, self._headers(), self._tls)
        try:
            while True:
                while len(running) < window:
                    nxt = next(todo, None)
                    if nxt is None:
                        break
                    i, req = nxt
                    one = self._generate_one if req.kind == "generate" else self._loglikelihood_one
                    call: asyncio.Future[Any] = asyncio.ensure_future(one(wire, req))
                    call.add_done_callback(self._count_answered)
                    call.add_done_callback(finished.put_nowait)
                    running[call] = i
                if not running:
                    return
                done = await finished.get()
                i = running.pop(done)
                exc = done.exception()
                if exc is not None:
                    # A capability or configuration error would hit every request alike:
                    # stop with its message rather than answer each with the same error.
                    answers.put(exc)
                    return
                answers.put((i, done.result()))
        finally:
            for pending, i in running.items():
                # a call that ended while the scheduler was being stopped is answered, not abandoned
                if pending.done() and not pending.cancelled() and pending.exception() is None:
                    answers.put((i, pending.result()))
                else:
                    pending.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            await wire.aclose()

    def _count_answered(self, call: asyncio.Future[Any]) -> None:
        if not call.cancelled() and call.exception() is None:
            self.n_answered += 1

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    async def _post(
        self,
        wire: _Wire,
        path: str,
        body: dict[str, Any],
        check: Callable[[dict[str, Any]], Any] | None = None,
    ) -> tuple[dict[str, Any], float, Any]:
        """POST with retries; returns (JSON body, latency of the successful attempt, check(body)).

        `check` reads what the caller needs from the body and raises `_Transient` when the reply
        is malformed (no text, null content...): such a reply is retried like a 5xx."""
        url = self.base_url + path
        last = ""
        for attempt in range(self.policy.max_retries + 1):
            retry_after: float | None = None
            try:
                self.n_attempts += 1
                resp, latency = await wire.post(url, body, self.timeout)
                data = self._parse(resp, path)
                return data, latency, check(data) if check is not None else None
            except _Transient as e:
                last, retry_after = str(e), e.retry_after
            except (httpx.TimeoutException, asyncio.TimeoutError) as e:
                last = f"timed out after {self.timeout:g}s ({type(e).__name__})"
            except httpx.TransportError as e:
                last = f"connection error: {type(e).__name__}: {e}"
            except httpx.DecodingError as e:  # a body its Content-Encoding does not decode
                last = f"malformed reply: {type(e).__name__}: {e}"
            if attempt == self.policy.max_retries:
                break
            wait = self.policy.delay(attempt, retry_after, self._rng)
            self.n_retries += 1
            # INFO, not WARNING: a rate-limited run retries often, and the engine reports what failed.
            log.info("POST %s failed (%s); retry %d/%d in %.2fs", url, last, attempt + 1, self.policy.max_retries, wait)
            await asyncio.sleep(wait)
        raise _GaveUp(f"POST {url} failed after {self.policy.max_retries + 1} attempts; last error: {last}")

    def _parse(self, resp: httpx.Response, path: str) -> dict[str, Any]:
        status = resp.status_code
        if status in RETRYABLE_STATUS or status >= 500:
            raise _Transient(f"HTTP {status}: {_server_message(resp)}", parse_retry_after(resp.headers.get("retry-after")))
        if status >= 400:
            raise _Rejected(status, _server_message(resp))
        try:
            data = json.loads(resp.content)
        except ValueError as e:
            raise _Transient(f"malformed reply: invalid JSON ({e})") from None
        if not isinstance(data, dict):
            raise _Transient(f"malformed reply: not a JSON object: {resp.text[:200]!r}")
        expected = REPLY_OBJECT.get(path)
        if "object" in data and expected and data["object"] != expected:
            raise _Transient(f"malformed reply: object is {data['object']!r}, expected {expected!r}")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise _Transient(f"malformed reply: no choices in {resp.text[:200]!r}")
        return data

    def _fatal(self, path: str, e: _Rejected) -> ModelError:
        url = self.base_url + path
        if e.status in (401, 403):
            return ModelError(f"{url} refused the credentials ({e})", "set OPENAI_API_KEY or pass api_key=")
        if path == "/completions":
            return UnsupportedRequestError(
                f"{url} answered {e}",
                "if the server is chat-only, use chat prompts (--chat) or string_prompts='chat'; "
                f"if the model name is wrong, list the served models at {self.base_url}/models",
            )
        return ModelError(f"{url} answered {e}", f"list the served models at {self.base_url}/models")

    # ---- generation ------------------------------------------------------------------------
    async def _generate_one(self, wire: _Wire, req: Request) -> Response:
        p = req.params
        body: dict[str, Any] = {"model": self.model, "temperature": p.temperature, "top_p": p.top_p}
        if p.stop:
            body["stop"] = list(p.stop)
        if p.seed is not None:
            # A sampled call's seed mixes the task's with the repeat, as the local backends do
            # (`sampling_seed`), so the n draws of pass@k differ and a re-run repeats them. A greedy
            # call sends the seed as given (OpenAI's best-effort determinism at temperature 0).
            mixed = sampling_seed(req)
            body["seed"] = p.seed if mixed is None else mixed % (2**31)
        prompt = req.prompt
        if isinstance(prompt, str) and self.string_prompts == "chat":
            prompt = (Message("user", prompt),)
        if isinstance(prompt, str):
            path = "/completions"
            body["prompt"] = prompt
        else:
            path = "/chat/completions"
            body["messages"] = [{"role": m.role, "content": m.content} for m in prompt]
        limit_field = "max_tokens" if path == "/completions" else self._chat_limit_field
        body[limit_field] = p.max_tokens
        check = _completion_text if path == "/completions" else _chat_text
        try:
            try:
                data, latency, (text, finish_reason) = await self._post(wire, path, body, check)
            except _Rejected as e:
                # OpenAI's newer chat models refuse `max_tokens` and ask for `max_completion_tokens`.
                if e.status != 400 or limit_field != "max_tokens" or "max_completion_tokens" not in e.message:
                    raise
                self._chat_limit_field = "max_completion_tokens"
                body["max_completion_tokens"] = body.pop("max_tokens")
                data, latency, (text, finish_reason) = await self._post(wire, path, body, check)
        except _Rejected as e:
            if e.status in FATAL_STATUS:
                raise self._fatal(path, e) from None
            return Response(error=f"{self.base_url}{path} rejected the request: {e}")
        except _GaveUp as e:
            return Response(error=str(e))
        if finish_reason == "content_filter":
            # The server withheld the answer (or cut it): no answer of the model's to score or to
            # cache. A failed call, as the run's counts say; a re-run asks again.
            return Response(error=f"{self.base_url}{path}: the server's content filter withheld the answer "
                            f"(finish_reason content_filter, {len(text)} characters kept)")
        return Response(
            text=text,
            prompt_tokens=_usage(data, "prompt_tokens", 0),
            completion_tokens=_usage(data, "completion_tokens", 0),
            latency_s=latency,
            finish_reason=finish_reason,
            system_fingerprint=_served_by([data], "system_fingerprint"),
            served_model=_served_by([data], "model"),
        )

    # ---- log-likelihood --------------------------------------------------------------------
    async def _loglikelihood_one(self, wire: _Wire, req: Request) -> Response:
        if not isinstance(req.prompt, str):
            raise UnsupportedRequestError(
                f"{self.model_id}: log-likelihood needs a plain-text prompt, got chat messages",
                "an OpenAI-compatible server scores text only through /completions; "
                "drop --chat, or use a generative task mode (a *_gen task such as mmlu_gen, "
                "or mc_mode: generate in a YAML spec)",
            )
        context = req.prompt
        scored = await asyncio.gather(
            *(self._continuation_logprob(wire, context, c) for c in req.continuations), return_exceptions=True
        )
        logprobs, greedy, n_tokens, bodies = [], [], [], []
        prompt_tokens = latency = 0.0
        for res in scored:
            if isinstance(res, _GaveUp):
                return Response(error=str(res))
            if isinstance(res, _Rejected):
                if res.status in FATAL_STATUS:
                    raise self._fatal("/completions", res)
                return Response(error=f"{self.base_url}/completions rejected the request: {res}")
            if isinstance(res, BaseException):
                raise res
            lp, is_greedy, n, ptoks, lat, data = res
            bodies.append(data)
            logprobs.append(lp)
            greedy.append(is_greedy)
            n_tokens.append(n)
            prompt_tokens += ptoks
            latency = max(latency, lat)
        return Response(
            logprobs=tuple(logprobs),
            is_greedy=tuple(greedy),
            n_tokens=tuple(n_tokens),
            prompt_tokens=int(prompt_tokens),
            latency_s=latency,
            system_fingerprint=_served_by(bodies, "system_fingerprint"),
            served_model=_served_by(bodies, "model"),
        )

    async def _continuation_logprob(
        self, wire: _Wire, context: str, continuation: str
    ) -> tuple[float, bool, int, int, float, dict[str, Any]]:
        """(summed logprob, greedy?, token count, prompt tokens, latency, the server's answer) of one
        continuation."""
        body = {
            "model": self.model,
            "prompt": context + continuation,
            "echo": True,
            "logprobs": 1,
            "max_tokens": self._score_max_tokens,
            "temperature": 0.0,
        }
        try:
            data, latency, _ = await self._post(wire, "/completions", body)
        except _Rejected as e:
            # Some servers (vLLM) refuse max_tokens=0; with 1, the one generated token lies past
            # the continuation's end and is left out of the sum below.
            if e.status != 400 or "max_tokens" not in e.message or body["max_tokens"] != 0:
                raise
            self._score_max_tokens = body["max_tokens"] = 1
            data, latency, _ = await self._post(wire, "/completions", body)
        lp = data["choices"][0].get("logprobs")
        try:
            tokens: list[str] = list(lp["tokens"])
            token_logprobs: list[float | None] = list(lp["token_logprobs"])
            offsets: list[int] = [int(o) for o in lp["text_offset"]]
            tops: list[Any] = list(lp.get("top_logprobs") or [None] * len(tokens))
        except (TypeError, KeyError, ValueError):
            raise self._no_prompt_logprobs() from None
        end = len(context) + len(continuation)
        # The continuation's tokens are those ending after the context: a token that straddles the
        # boundary (the tokenizer merged the context's last characters with the continuation's
        # first) is counted, since it is the first token that says anything about the continuation.
        picked = [
            i
            for i, (tok, off) in enumerate(zip(tokens, offsets))
            if off + len(tok) > len(context) and off < end
        ]
        if not picked or not tokens or offsets[0] != 0 or len(token_logprobs) != len(tokens):
            raise self._no_prompt_logprobs()
        total = 0.0
        greedy = True
        for i in picked:
            value = token_logprobs[i]
            if value is None:
                raise UnsupportedRequestError(
                    f"{self.model_id}: the continuation {continuation!r} starts the text, so the server "
                    "gives its first token no log-probability",
                    "give every log-likelihood request a non-empty context",
                )
            total += float(value)
            top = tops[i] if i < len(tops) else None
            # Greedy iff each continuation token is the most likely one; a position whose top
            # alternatives the server did not list cannot be shown greedy.
            greedy = greedy and isinstance(top, dict) and bool(top) and max(top, key=top.__getitem__) == tokens[i]
        return total, greedy, len(picked), _usage(data, "prompt_tokens", 0) or len(tokens), latency, data

    def _no_prompt_logprobs(self) -> UnsupportedRequestError:
        return UnsupportedRequestError(
            f"server {self.base_url} does not return prompt logprobs (echo=True, logprobs=1) for {self.model}, "
            "so it cannot score multiple-choice answers by log-likelihood",
            "use a generative task mode (a *_gen task such as mmlu_gen, or mc_mode: generate in a "
            "YAML spec), or a server that echoes prompt logprobs (vLLM serve, capeval serve-model)",
        )


def _reply_text(text: Any, finish_reason: Any, what: str) -> tuple[str, str | None]:
    """A choice's text, or `_Transient` when the reply carries none: a missing or null text is a
    broken reply (retried, never cached), while an empty string with a finish reason is a real,
    empty answer (kept; the sample says so)."""
    if text is None:
        raise _Transient(f"malformed reply: {what}")
    if not isinstance(text, str):
        raise _Transient(f"malformed reply: non-text completion {text!r:.100}")
    if text == "" and not finish_reason:
        raise _Transient("malformed reply: empty text without a finish_reason")
    return _repaired(text), _repaired(str(finish_reason)) if finish_reason else None


def _repaired(text: str) -> str:
    """`text` with each unpaired UTF-16 surrogate (JSON `"\\ud83d"` with no low half, as a server
    that cuts an emoji in two at the token limit sends) replaced by U+FFFD: such text cannot be
    encoded as UTF-8, so the store could not keep the answer."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _completion_text(data: dict[str, Any]) -> tuple[str, str | None]:
    choice = data["choices"][0]
    return _reply_text(choice.get("text"), choice.get("finish_reason"), "choice without text")


def _chat_text(data: dict[str, Any]) -> tuple[str, str | None]:
    choice = data["choices"][0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise _Transient("malformed reply: choice without message")
    content = message.get("content")
    if content is None and isinstance(message.get("refusal"), str):
        content = message["refusal"]  # OpenAI puts a refusal here with content null
    return _reply_text(content, choice.get("finish_reason"), "message content is null" if "content" in message else "message without content")


def _usage(data: dict[str, Any], key: str, default: int) -> int:
    """A token count from the reply's `usage`, or `default` where the server sent none or
    something that is not a count ("n/a", a list): usage is bookkeeping, never worth an answer."""
    usage = data.get("usage")
    value = usage.get(key) if isinstance(usage, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return default
    try:
        n = int(value)
    except (ValueError, OverflowError):
        return default
    return n if n >= 0 else default


def _served_by(bodies: Sequence[dict[str, Any]], key: str) -> str | None:
    """What the server said answered: its `system_fingerprint` or `model` field (several distinct
    values, from the continuations of one request, joined with ",")."""
    values = sorted({_repaired(str(b[key])) for b in bodies if isinstance(b, dict) and b.get(key)})
    return ",".join(values) if values else None


@register_backend("openai")
def openai_backend(
    spec: str,
    base_url: str | None = None,
    api_key: str | None = None,
    concurrency: int = 8,
    max_retries: int = 5,
    timeout: float = 120.0,
    backoff_base: float = 0.5,
    backoff_max: float = 30.0,
    string_prompts: Literal["completions", "chat"] = "completions",
    jitter_seed: int | None = None,
    batch_size: int | None = None,
) -> OpenAIModel:
    """`openai:<model>` or `openai:<model>@<base_url>`.

    Args:
        base_url: the API root, e.g. http://127.0.0.1:8000/v1 (default: $OPENAI_BASE_URL, else OpenAI).
        api_key: sent as a Bearer token (default: $OPENAI_API_KEY; local servers need none).
        concurrency: requests kept in flight: a new one starts as soon as one ends.
        max_retries: retries after the first attempt for 429 / 5xx / timeouts / connection errors /
            malformed replies; then the request is answered with an error and a re-run retries it.
        timeout: seconds per attempt, the whole attempt: a call hung longer is abandoned and
            retried, while the other calls go on.
        backoff_base, backoff_max: exponential backoff between attempts, in seconds.
        string_prompts: "completions" sends plain-text prompts to /completions; "chat" sends each
            as one user message to /chat/completions (for chat-only servers).
        jitter_seed: seeds the random backoff jitter (reproducible waits; not the model's seed).
        batch_size: accepted for command-line symmetry with local backends and ignored: over
            HTTP, `concurrency` is what bounds the work in flight.
    """
    model, url = spec, ""
    head, sep, tail = spec.rpartition("@")
    if sep and tail.startswith(("http://", "https://")):
        model, url = head, tail
    if url and base_url and url.rstrip("/") != base_url.rstrip("/"):
        raise ModelError(f"two base URLs given: {url} in the spec and {base_url} as an option", "give only one")
    return OpenAIModel(
        model,
        base_url=url or base_url,
        api_key=api_key,
        concurrency=concurrency,
        max_retries=max_retries,
        timeout=timeout,
        backoff_base=backoff_base,
        backoff_max=backoff_max,
        string_prompts=string_prompts,
        jitter_seed=jitter_seed,
    )
