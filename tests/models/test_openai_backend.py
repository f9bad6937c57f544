"""The `openai` backend against real HTTP servers on 127.0.0.1: `capeval serve-model`'s app serving
the bundled SmolLM2 (with injected faults), and a scripted server without prompt logprobs."""

from __future__ import annotations

import email.utils
import time
from dataclasses import replace

import pytest

from capeval.engine import execute
from capeval.errors import ModelError, UnsupportedRequestError
from capeval.models import load_model
from capeval.models.base import sampling_seed
from capeval.models.openai_api import OpenAIModel, parse_retry_after
from capeval.models.serve import FaultPlan, serving
from capeval.types import GenerationParams, Message, Request

SERVED = "smollm2-135m-instruct"


def gen(prompt, max_tokens=8, stop=()):
    return Request("generate", prompt, params=GenerationParams(max_tokens=max_tokens, stop=tuple(stop)))


PROMPTS = [
    gen((Message("user", "What is the capital of France?"),), 12),
    gen((Message("system", "Answer in one word."), Message("user", "Name a primary colour.")), 6),
    gen("The capital of France is", 8),
    gen("1, 2, 3, 4,", 12, stop=(" 7",)),
]


@pytest.fixture(scope="module")
def server(smollm2):
    """One server for the module; each test starts with no faults and zeroed counters."""
    plan = FaultPlan(retry_after=1.0, hang_s=30.0)
    with serving(smollm2, plan, served_name=SERVED) as srv:
        yield srv


@pytest.fixture
def srv(server):
    server.app.state.faults.clear()
    server.app.state.stats.reset()
    yield server
    server.app.state.faults.clear()


def client(srv, **options) -> OpenAIModel:
    opts = {"backoff_base": 0.02, "backoff_max": 0.1, "timeout": 60.0, "jitter_seed": 0, **options}
    m = load_model(f"openai:{SERVED}@{srv.base_url}", **opts)
    assert isinstance(m, OpenAIModel)
    return m


# ---- no server needed -------------------------------------------------------------------------
def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    now = time.time()
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(7, abs=1.0)
    assert parse_retry_after(email.utils.formatdate(now - 60, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_spec_names_model_and_server():
    m = load_model("openai:my-model@http://10.0.0.1:8000/v1/")
    assert (m.model, m.base_url) == ("my-model", "http://10.0.0.1:8000/v1")
    assert m.model_id == "openai:my-model@http://10.0.0.1:8000/v1"
    assert load_model("openai:gpt-x", base_url="http://h/v1").model_id == "openai:gpt-x@http://h/v1"
    with pytest.raises(ModelError, match="two base URLs"):
        load_model("openai:m@http://a/v1", base_url="http://b/v1")


def test_server_without_prompt_logprobs_is_a_clear_error():
    from scripted_chat import ScriptedChatServer

    with ScriptedChatServer(lambda model, messages: "B") as chat_only:
        m = load_model("openai:judge", base_url=chat_only.base_url, max_retries=0)
        assert m.generate([gen("Q: 2+2?\nA:")])[0].text == "B"
        with pytest.raises(UnsupportedRequestError) as e:
            m.loglikelihood([Request("loglikelihood", "Answer:", continuations=(" A", " B"))])
    assert "does not return prompt logprobs" in str(e.value)
    assert "mmlu_gen" in (e.value.hint or "")


def test_callable_from_inside_a_running_event_loop():
    import asyncio

    from scripted_chat import ScriptedChatServer

    with ScriptedChatServer(lambda model, messages: messages[-1]["content"].upper()) as srv:
        m = load_model("openai:echo", base_url=srv.base_url)

        async def notebook_cell():
            return m.generate([gen((Message("user", "hi there"),))])  # sync call, loop running

        assert asyncio.run(notebook_cell())[0].text == "HI THERE"


def test_chat_only_server_needs_string_prompts_chat():
    from fastapi import FastAPI

    from capeval.models.serve import ServerThread

    seen: list[list[dict]] = []
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: dict) -> dict:
        seen.append(body["messages"])
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}

    with ServerThread(app) as srv:
        plain = load_model("openai:m", base_url=srv.base_url, max_retries=0)
        with pytest.raises(UnsupportedRequestError) as e:
            plain.generate([gen("Say ok")])
        assert "404" in str(e.value) and "string_prompts='chat'" in (e.value.hint or "")
        as_chat = load_model("openai:m", base_url=srv.base_url, string_prompts="chat")
        assert as_chat.generate([gen("Say ok")])[0].text == "ok"
        # answers differ from /completions ones, so they must not share cache keys
        assert as_chat.model_id != plain.model_id
    assert seen == [[{"role": "user", "content": "Say ok"}]]


def test_servers_refusing_max_tokens_0_are_scored_with_1():
    """vLLM-style: echo+logprobs only with max_tokens >= 1; the generated token is left out."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from capeval.models.serve import ServerThread, split_pieces

    sent: list[int] = []
    app = FastAPI()

    @app.post("/v1/completions")
    async def completions(body: dict):
        sent.append(body["max_tokens"])
        if body["max_tokens"] < 1:
            return JSONResponse({"error": {"message": "max_tokens must be at least 1, got 0."}}, status_code=400)
        prompt = body["prompt"]
        pieces = split_pieces(prompt) + [(len(prompt), " C")]  # one generated token after the prompt
        return {
            "choices": [{"index": 0, "text": prompt + " C", "logprobs": {
                "tokens": [p for _, p in pieces],
                "token_logprobs": [None] + [-1.0] * (len(pieces) - 2) + [-0.5],
                "top_logprobs": [None] + [{p: -1.0} for _, p in pieces[1:-1]] + [{" C": -0.5}],
                "text_offset": [o for o, _ in pieces],
            }}],
            "usage": {"prompt_tokens": len(pieces) - 1, "completion_tokens": 1},
        }

    with ServerThread(app) as srv:
        m = load_model("openai:m", base_url=srv.base_url, concurrency=1)
        (got,) = m.loglikelihood([Request("loglikelihood", "Answer:", continuations=(" B", " B or A"))])
        assert sent.count(1) == 2 and sent[0] == 0  # refused with 0, then each sent again with 1
        sent.clear()
        m.loglikelihood([Request("loglikelihood", "Q:", continuations=(" A",))])
    assert sent == [1]  # remembered: no more refused attempts
    assert got.error is None
    assert got.logprobs == (-1.0, -3.0) and got.n_tokens == (1, 3) and got.is_greedy == (True, True)


def test_chat_servers_wanting_max_completion_tokens_get_it():
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from capeval.models.serve import ServerThread

    limits: list[tuple[str, int]] = []
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: dict):
        if "max_tokens" in body:
            message = "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
            return JSONResponse({"error": {"message": message}}, status_code=400)
        limits.append(("max_completion_tokens", body["max_completion_tokens"]))
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}]}

    with ServerThread(app) as srv:
        m = load_model("openai:new-model", base_url=srv.base_url, concurrency=1)
        got = m.generate([gen((Message("user", "Hi"),), 5), gen((Message("user", "Hello"),), 7)])
    assert [r.text for r in got] == ["fine", "fine"]
    assert limits == [("max_completion_tokens", 5), ("max_completion_tokens", 7)]


def test_repeated_sampled_draws_send_different_seeds():
    """pass@k's n draws of one seeded prompt must differ: the seed sent mixes in the repeat (as the
    local backends' `sampling_seed` does), the same on every re-run; a greedy call sends its own."""
    from scripted_chat import ScriptedChatServer

    sampled = GenerationParams(max_tokens=4, temperature=0.8, seed=7)
    draws = [Request("generate", "Write a word:", params=sampled, repeat=k) for k in range(4)]
    greedy = Request("generate", "Write a word:", params=GenerationParams(max_tokens=4, seed=7))
    with ScriptedChatServer(lambda model, messages: "word") as srv:
        m = load_model("openai:m", base_url=srv.base_url, concurrency=1)
        m.generate([*draws, greedy])
        m.generate(draws)
    seeds = [body.get("seed") for body in srv.requests]
    assert seeds[:4] == [sampling_seed(r) % 2**31 for r in draws]
    assert len(set(seeds[:4])) == 4
    assert seeds[4] == 7
    assert seeds[5:] == seeds[:4]  # a re-run draws the same


def test_each_items_draws_have_their_own_random_stream():
    """With a seed, two items' r-th draws must not share their random numbers (the seed alone with
    the repeat gave every item the same stream, correlating all items' draws)."""
    sampled = GenerationParams(max_tokens=4, temperature=0.8, seed=7)
    a, b = (Request("generate", q, params=sampled, repeat=0) for q in ("Write a word:", "Write a number:"))
    assert sampling_seed(a) != sampling_seed(b)
    assert sampling_seed(a) == sampling_seed(Request("generate", "Write a word:", params=sampled, repeat=0))
    other_seed = replace(a, params=replace(sampled, seed=8))
    assert sampling_seed(other_seed) != sampling_seed(a)
    assert sampling_seed(replace(a, params=replace(sampled, temperature=0.0))) is None


def test_half_an_emoji_in_a_reply_is_kept_and_cached(store):
    """A reply cut inside a surrogate pair (JSON "\\ud83d" with no low half) is a real answer: kept
    with U+FFFD in place of the half, and cached with the rest of its group."""
    from scripted_chat import ScriptedChatServer

    reqs = [gen(f"Say {w}") for w in ("hi", "CUT", "bye")]
    with ScriptedChatServer(lambda model, messages: "ok \ud83d" if "CUT" in messages[-1]["content"] else "ok") as srv:
        responses, stats = execute(load_model("openai:m", base_url=srv.base_url, max_retries=0), reqs, store)
    assert [r.text for r in responses] == ["ok", "ok \ufffd", "ok"]
    assert (stats.new, stats.failed) == (3, 0)
    assert store.get_calls([r.key("openai:m@" + srv.base_url) for r in reqs]).keys() == {
        r.key("openai:m@" + srv.base_url) for r in reqs}


def test_a_usage_field_that_is_not_a_count_is_left_out():
    """usage is bookkeeping: "n/a", a list or a negative count in an otherwise good reply keeps the
    answer (the count is left out) instead of stopping the run."""
    from fastapi import FastAPI

    from capeval.models.serve import ServerThread, split_pieces

    usages = iter([{"prompt_tokens": "n/a", "completion_tokens": 2}, [], {"prompt_tokens": 4, "completion_tokens": -1},
                   {"prompt_tokens": "n/a"}])
    app = FastAPI()

    @app.post("/v1/completions")
    async def completions(body: dict):
        if not body.get("echo"):
            return {"choices": [{"index": 0, "text": "ok", "finish_reason": "stop"}], "usage": next(usages)}
        pieces = split_pieces(body["prompt"])
        return {
            "choices": [{"index": 0, "text": body["prompt"], "logprobs": {
                "tokens": [p for _, p in pieces], "token_logprobs": [None] + [-1.0] * (len(pieces) - 1),
                "top_logprobs": [None] + [{p: -1.0} for _, p in pieces[1:]], "text_offset": [o for o, _ in pieces],
            }}],
            "usage": next(usages),
        }

    with ServerThread(app) as srv:
        m = load_model("openai:m", base_url=srv.base_url, concurrency=1, max_retries=0)
        got = m.generate([gen("a"), gen("b"), gen("c")])
        (scored,) = m.loglikelihood([Request("loglikelihood", "Answer:", continuations=(" B",))])
    assert [(r.text, r.prompt_tokens, r.completion_tokens, r.error) for r in got] == [
        ("ok", 0, 2, None), ("ok", 0, 0, None), ("ok", 4, 0, None)]
    assert scored.error is None and scored.logprobs == (-1.0,) and scored.prompt_tokens == len(split_pieces("Answer: B"))


def test_a_reply_whose_content_encoding_does_not_decode_is_retried():
    from fastapi import FastAPI
    from fastapi.responses import Response as RawResponse

    from capeval.models.serve import ServerThread

    replies = 0
    app = FastAPI()

    @app.post("/v1/completions")
    async def completions(body: dict):
        nonlocal replies
        replies += 1
        if replies == 1:
            return RawResponse(b"this is not gzip", media_type="application/json", headers={"Content-Encoding": "gzip"})
        return {"choices": [{"index": 0, "text": "fine", "finish_reason": "stop"}]}

    with ServerThread(app) as srv:
        m = load_model("openai:m", base_url=srv.base_url, backoff_base=0.01, max_retries=1)
        (got,) = m.generate([gen("Q?")])
    assert got.error is None and got.text == "fine"
    assert replies == 2 and m.n_retries == 1


def test_an_answer_the_content_filter_withheld_is_a_failed_call(store):
    """finish_reason content_filter: no answer of the model's, so the call fails (not cached, not
    retried: the filter would withhold it again); "length" and "stop" are answers, empty or not."""
    from fastapi import FastAPI

    from capeval.models.serve import ServerThread

    finish = {"Filtered": "content_filter", "Cut": "length", "Empty": "stop"}
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: dict):
        word = body["messages"][-1]["content"]
        content = "" if word in ("Filtered", "Empty") else f"{word} reply"
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": finish.get(word, "stop")}]}

    reqs = [gen((Message("user", w),)) for w in ("Hello", "Filtered", "Cut", "Empty")]
    with ServerThread(app) as srv:
        m = load_model("openai:m", base_url=srv.base_url, concurrency=1, backoff_base=0.01)
        responses, stats = execute(m, reqs, store)
        assert m.n_attempts == 4
        _, stats2 = execute(m, reqs, store)
    assert [(r.text, r.finish_reason) for r in responses] == [
        ("Hello reply", "stop"), (None, None), ("Cut reply", "length"), ("", "stop")]
    assert "content filter" in (responses[1].error or "") and "content_filter" in responses[1].error
    assert (stats.new, stats.failed) == (3, 1)
    assert (stats2.cached, stats2.new, stats2.failed) == (3, 0, 1)  # asked again, never cached


def test_chat_prompts_cannot_be_scored_by_loglikelihood():
    m = load_model("openai:m@http://127.0.0.1:9/v1")
    with pytest.raises(UnsupportedRequestError, match="plain-text prompt"):
        m.loglikelihood([Request("loglikelihood", (Message("user", "Q?"),), continuations=(" A",))])


# ---- against the bundled model ----------------------------------------------------------------
@pytest.mark.slow
def test_greedy_generation_equals_direct(srv, smollm2):
    direct = [smollm2.generate([r])[0] for r in PROMPTS]
    remote = client(srv).generate(PROMPTS)
    assert all(r.error is None for r in remote), [r.error for r in remote]
    assert [r.text for r in remote] == [d.text for d in direct]
    assert all(r.error is None for r in remote)
    assert [r.finish_reason for r in remote] == [d.finish_reason for d in direct]
    # usage and latency are recorded for the store
    assert [r.completion_tokens for r in remote] == [d.completion_tokens for d in direct]
    assert all(r.prompt_tokens > 0 and r.latency_s > 0 for r in remote)
    assert "Paris" in remote[0].text
    assert " 7" not in remote[3].text  # the stop sequence was honoured


@pytest.mark.slow
def test_sampling_parameters_reach_the_model(srv, smollm2):
    sampled = [
        Request("generate", "My favourite animal is", params=GenerationParams(max_tokens=10, temperature=1.0, top_p=0.9, seed=s))
        for s in (1, 2, 3)
    ]
    # the backend sends each request's own seed (the task's mixed with its repeat), which the
    # server's model takes as a request of its own
    sent = [replace(r, params=replace(r.params, seed=sampling_seed(r) % 2**31)) for r in sampled]
    direct = [smollm2.generate([r])[0].text for r in sent]
    remote = [r.text for r in client(srv).generate(sampled)]
    assert remote == direct  # same temperature, top_p and seed: the same draw
    assert len(set(direct)) > 1  # and the seed really changes it


@pytest.mark.slow
def test_loglikelihood_through_server_equals_direct(srv, smollm2):
    reqs = [
        Request("loglikelihood", "The capital of France is", continuations=(" Paris", " Rome", " a city in Europe")),
        Request("loglikelihood", "Question: What colour is the sky?\nAnswer:", continuations=(" blue", " green")),
        Request("loglikelihood", "2 + 2 =", continuations=(" 4", " 5")),
    ]
    direct = smollm2.loglikelihood(reqs)
    remote = client(srv).loglikelihood(reqs)
    for d, r in zip(direct, remote):
        assert r.error is None
        assert r.logprobs == pytest.approx(d.logprobs, rel=1e-5, abs=2e-3)
        assert r.is_greedy == d.is_greedy
        assert r.n_tokens == d.n_tokens  # the server reports the model's own tokens
    assert remote[0].logprobs[0] > remote[0].logprobs[1]  # Paris beats Rome
    assert remote[0].is_greedy[0] and not remote[0].is_greedy[1]


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["429", "500", "hang", "malformed", "drop"])
def test_each_fault_is_retried_and_answers_stay_right(srv, smollm2, fault):
    expected = [smollm2.generate([r])[0].text for r in PROMPTS[:2]]
    srv.app.state.faults.add(fault)
    hang_timeout = 4.0  # long enough for a normal answer on a busy CPU, so only the hang times out
    m = client(srv, concurrency=1, timeout=hang_timeout if fault == "hang" else 60.0)
    start = time.monotonic()
    got = m.generate(PROMPTS[:2])
    elapsed = time.monotonic() - start
    assert [r.text for r in got] == expected
    assert all(r.error is None for r in got)
    assert srv.app.state.faults.injected[fault] == 1
    assert m.n_retries == 1 and m.n_attempts == 3
    if fault == "429":
        assert elapsed >= 1.0  # the server's Retry-After: 1, not the 0.02 s backoff
    if fault == "hang":
        assert elapsed >= hang_timeout  # waited for the client timeout, then retried


@pytest.mark.slow
def test_4xx_fails_at_once_with_the_servers_message(srv):
    srv.app.state.faults.add("400")
    m = client(srv, concurrency=1)
    got = m.generate(PROMPTS[2:4])
    assert "injected fault: bad request" in (got[0].error or "")
    assert "HTTP 400" in got[0].error
    assert got[1].error is None and got[1].text
    assert m.n_attempts == 2 and m.n_retries == 0


@pytest.mark.slow
def test_unknown_model_name_stops_with_a_hint(srv):
    m = load_model(f"openai:no-such-model@{srv.base_url}", max_retries=0)
    with pytest.raises(ModelError) as e:
        m.generate([PROMPTS[0]])
    assert "no-such-model" in str(e.value) and "/models" in (e.value.hint or "")


@pytest.mark.slow
def test_failing_request_is_stored_as_error_and_rerun_sends_only_it(srv, store):
    reqs = [gen(f"Count from {i}: {i},", 6) for i in range(1, 5)]
    plan = srv.app.state.faults
    plan.match, plan.rate, plan.kinds = "Count from 3:", 1.0, ("500",)
    m = client(srv, max_retries=2, concurrency=2)
    responses, stats = execute(m, reqs, store)
    assert (stats.new, stats.failed, stats.cached) == (3, 1, 0)
    assert responses[2].error is not None and "failed after 3 attempts" in responses[2].error
    assert "HTTP 500" in responses[2].error
    assert [r.text for i, r in enumerate(responses) if i != 2] and all(
        r.error is None for i, r in enumerate(responses) if i != 2
    )
    assert store.query("SELECT COUNT(*) AS n FROM model_calls")[0]["n"] == 3
    assert srv.app.state.stats.requests == 3 + 3  # three answers, one request tried three times

    plan.clear()
    srv.app.state.stats.reset()
    again, stats2 = execute(client(srv), reqs, store)
    assert (stats2.cached, stats2.new, stats2.failed) == (3, 1, 0)
    assert srv.app.state.stats.requests == 1
    assert [r.text for r in again[:2]] == [r.text for r in responses[:2]]
    assert again[2].error is None and again[2].text


@pytest.mark.slow
def test_concurrency_bounds_requests_in_flight(srv):
    reqs = [gen(f"Write the number {i} in words:", 4) for i in range(12)]
    got = client(srv, concurrency=3).generate(reqs)
    assert all(r.error is None for r in got)
    stats = srv.app.state.stats
    assert stats.requests == 12
    # The model answers one request at a time, so with 3 allowed the client keeps exactly 3 waiting.
    assert stats.max_in_flight == 3
