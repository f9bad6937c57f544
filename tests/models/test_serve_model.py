"""`capeval serve-model`: the OpenAI-compatible app over the bundled SmolLM2, spoken to with plain
httpx on 127.0.0.1, its fault injection, and the command line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from capeval.errors import CapevalError
from capeval.models.serve import FaultPlan, serving, split_pieces
from capeval.types import Request

SERVED = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def server(smollm2):
    with serving(smollm2, FaultPlan(retry_after=2.0), served_name=SERVED) as srv:
        yield srv


@pytest.fixture
def srv(server):
    server.app.state.faults.clear()
    server.app.state.stats.reset()
    yield server
    server.app.state.faults.clear()


def test_pieces_cover_the_text_and_split_before_answers():
    text = "Question: 2+2?\nAnswer: B, then  blue.  "
    pieces = split_pieces(text)
    assert "".join(p for _, p in pieces) == text
    assert all(text[o : o + len(p)] == p for o, p in pieces)
    # answers start at piece boundaries, so their log-likelihood is a sum of whole pieces
    assert [p for _, p in pieces][6:9] == ["\nAnswer", ":", " B"]


def test_fault_plan_parse_and_bad_input():
    plan = FaultPlan.parse("429x2, hang,drop")
    assert list(plan.queued) == ["429", "429", "hang", "drop"]
    assert [plan.next_fault() for _ in range(5)] == ["429", "429", "hang", "drop", None]
    assert plan.injected["429"] == 2
    with pytest.raises(CapevalError, match="unknown fault 'teapot'"):
        FaultPlan.parse("teapot")
    with pytest.raises(CapevalError, match="bad fault"):
        FaultPlan.parse("500xmany")
    only = FaultPlan(rate=1.0, kinds=("500",), match="item-7")
    assert only.next_fault(b'{"prompt": "item-7"}') == "500" and only.next_fault(b'{"prompt": "item-8"}') is None


@pytest.mark.slow
def test_models_and_unknown_model_error(srv):
    listed = httpx.get(f"{srv.base_url}/models").json()
    assert [m["id"] for m in listed["data"]] == [SERVED]
    r = httpx.post(f"{srv.base_url}/completions", json={"model": "gpt-9", "prompt": "Hi", "max_tokens": 1})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found" and "gpt-9" in r.json()["error"]["message"]


@pytest.mark.slow
def test_echo_logprobs_score_the_prompt(srv, smollm2):
    context, answer = "The capital of France is", " Paris"
    body = {"model": SERVED, "prompt": context + answer, "echo": True, "logprobs": 1, "max_tokens": 0}
    r = httpx.post(f"{srv.base_url}/completions", json=body, timeout=60)
    assert r.status_code == 200
    choice = r.json()["choices"][0]
    assert choice["text"] == context + answer
    lp = choice["logprobs"]
    assert "".join(lp["tokens"]) == context + answer
    assert lp["token_logprobs"][0] is None and all(x < 0 for x in lp["token_logprobs"][1:])
    assert lp["text_offset"][-1] == len(context) and lp["tokens"][-1] == answer
    (direct,) = smollm2.loglikelihood([Request("loglikelihood", context, continuations=(answer,))])
    assert lp["token_logprobs"][-1] == pytest.approx(direct.logprobs[0], rel=1e-5, abs=1e-3)
    # " Paris" is SmolLM2's greedy continuation here, so it is its own top alternative
    assert direct.is_greedy[0] and lp["top_logprobs"][-1] == {answer: lp["token_logprobs"][-1]}


class _AnyModel:
    """SmolLM2 seen only through the Model protocol (no tokenizer): the server's fallback path."""

    def __init__(self, inner):
        self.inner, self.model_id = inner, "opaque:" + inner.model_id

    def generate(self, requests):
        return self.inner.generate(requests)

    def loglikelihood(self, requests):
        return self.inner.loglikelihood(requests)


@pytest.mark.slow
def test_any_model_is_scored_piece_by_piece(smollm2):
    from capeval.models import load_model

    reqs = [
        Request("loglikelihood", "Question: What colour is the sky?\nAnswer:", continuations=(" blue", " green")),
        Request("loglikelihood", "The capital of France is", continuations=(" Paris", " a city in Europe")),
    ]
    direct = smollm2.loglikelihood(reqs)
    with serving(_AnyModel(smollm2), served_name="any") as any_srv:
        remote = load_model(f"openai:any@{any_srv.base_url}").loglikelihood(reqs)
        calls = any_srv.app.state.stats.model_calls
        echoed = httpx.post(
            f"{any_srv.base_url}/completions",
            json={"prompt": "The capital of France is Paris", "echo": True, "logprobs": 1, "max_tokens": 0},
        ).json()["choices"][0]["logprobs"]
    for d, r in zip(direct, remote):
        assert r.logprobs == pytest.approx(d.logprobs, rel=1e-5, abs=2e-3)  # the chain rule over pieces
        assert r.is_greedy == d.is_greedy
    assert calls == 4  # one scoring call per continuation
    assert echoed["tokens"] == ["The", " capital", " of", " France", " is", " Paris"]
    assert echoed["top_logprobs"][-1] == {" Paris": echoed["token_logprobs"][-1]}  # greedy
    assert echoed["top_logprobs"][1] == {}  # not greedy: the Model does not say what would be


@pytest.mark.slow
def test_bad_requests_get_openai_style_400s(srv):
    cases = [
        ({"prompt": "Hi", "stream": True}, "stream"),
        ({"prompt": "Hi", "n": 2}, "n > 1"),
        ({"prompt": [1, 2, 3]}, "token-id prompts"),
        ({"prompt": "Hi", "temperature": "hot"}, "invalid generation parameter"),
    ]
    for body, words in cases:
        r = httpx.post(f"{srv.base_url}/completions", json=body)
        assert r.status_code == 400, body
        assert words in r.json()["error"]["message"]
    r = httpx.post(f"{srv.base_url}/chat/completions", json={"messages": []})
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
    assert srv.app.state.stats.model_calls == 0


@pytest.mark.slow
def test_injected_faults_look_like_real_server_failures(srv):
    url = f"{srv.base_url}/chat/completions"
    body = {"model": SERVED, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    srv.app.state.faults.add("429").add("500").add("malformed").add("drop")
    r = httpx.post(url, json=body)
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    assert "rate limited" in r.json()["error"]["message"]
    r = httpx.post(url, json=body)
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    r = httpx.post(url, json=body)
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(url, json=body)
    r = httpx.post(url, json=body, timeout=60)  # the queue is empty: a normal answer
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    # a hung request stays open until the client gives up
    srv.app.state.faults.add("hang")
    start = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json=body, timeout=1.0)
    assert time.monotonic() - start >= 1.0
    assert dict(srv.app.state.faults.injected) == {"429": 1, "500": 1, "malformed": 1, "drop": 1, "hang": 1}


@pytest.mark.slow
def test_server_answers_while_the_model_works(srv):
    long_body = {"model": SERVED, "prompt": "Once upon a time", "max_tokens": 60, "temperature": 0}
    done: dict[str, httpx.Response] = {}
    worker = threading.Thread(target=lambda: done.update(r=httpx.post(f"{srv.base_url}/completions", json=long_body, timeout=120)))
    worker.start()
    while srv.app.state.stats.model_calls == 0:
        time.sleep(0.01)
    listed = httpx.get(f"{srv.base_url}/models", timeout=30)
    # /models answered while the generation was still in flight (no wall-clock bound: load varies)
    still_generating = srv.app.state.stats.in_flight == 1
    worker.join()
    assert listed.status_code == 200 and still_generating
    assert done["r"].json()["usage"]["completion_tokens"] > 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_model_command(tmp_path):
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "capeval", "serve-model", "--model", SERVED, "--port", str(port), "--served-name", "tiny", "--faults", "429", "--retry-after", "3"]
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                models = httpx.get(f"{base}/models", timeout=1).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve-model did not come up"
                time.sleep(0.3)
        assert models["data"][0]["id"] == "tiny"
        body = {"model": "tiny", "messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 12, "temperature": 0}
        limited = httpx.post(f"{base}/chat/completions", json=body, timeout=60)
        assert limited.status_code == 429 and limited.headers["retry-after"] == "3"  # --faults 429
        answer = httpx.post(f"{base}/chat/completions", json=body, timeout=60).json()
        assert "Paris" in answer["choices"][0]["message"]["content"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.slow
def test_max_batch_answers_waiting_requests_together(smollm2):
    from capeval.models import load_model
    from capeval.types import GenerationParams

    reqs = [Request("generate", f"Q: What is {i} plus {i}?\nA:", params=GenerationParams(max_tokens=6)) for i in range(1, 9)]
    with serving(smollm2, served_name=SERVED, max_batch=4) as batched:
        got = load_model(f"openai:{SERVED}@{batched.base_url}", concurrency=8).generate(reqs)
        calls = batched.app.state.stats.model_calls
    assert all(r.error is None and r.text for r in got)
    assert calls < len(reqs)  # requests that waited together shared a model call
    # each answer went back to its own request: the same as answering it alone (the prompts have
    # one token length, so batching adds no padding)
    alone = [smollm2.generate([r])[0].text for r in reqs]
    assert [r.text for r in got] == alone


@pytest.mark.slow
def test_requests_whose_client_left_are_not_computed(srv):
    """A client that timed out while the model was busy will retry; its first copy is skipped."""
    long_body = {"model": SERVED, "prompt": "Once upon a time", "max_tokens": 40, "temperature": 0}
    busy = threading.Thread(target=lambda: httpx.post(f"{srv.base_url}/completions", json=long_body, timeout=120))
    busy.start()
    while srv.app.state.stats.model_calls == 0:
        time.sleep(0.01)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{srv.base_url}/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}]}, timeout=0.3)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{srv.base_url}/completions",
            json={"prompt": "Hi there", "echo": True, "logprobs": 1, "max_tokens": 0},
            timeout=0.3,
        )
    busy.join()
    deadline = time.monotonic() + 10
    while srv.app.state.stats.skipped < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.app.state.stats.skipped == 2
    assert srv.app.state.stats.model_calls == 1  # only the long generation ran


@pytest.mark.slow
def test_choices_sharing_a_question_reuse_its_kv_cache(srv, smollm2):
    from capeval.models import load_model

    shots = "".join(f"Question: What is {i} times {i + 1}?\nA. {i * i}\nB. {i * (i + 1)}\nC. {i + i}\nAnswer: B\n\n" for i in range(2, 7))
    reqs = [
        Request("loglikelihood", shots + f"Question: What is {i} times 3?\nA. {i * 3}\nB. {i + 3}\nC. {i}\nAnswer:", continuations=(" A", " B", " C"))
        for i in (4, 5, 7)
    ]
    scorer = srv.app.state.scorer
    before = scorer.forward_tokens
    remote = load_model(f"openai:{SERVED}@{srv.base_url}", concurrency=1).loglikelihood(reqs)
    direct = smollm2.loglikelihood(reqs)
    for d, r in zip(direct, remote):
        assert r.logprobs == pytest.approx(d.logprobs, rel=1e-5, abs=1e-3)
        assert r.is_greedy == d.is_greedy
    # the same choice wins as when the model is called directly
    assert [max(range(3), key=r.logprobs.__getitem__) for r in remote] == [max(range(3), key=d.logprobs.__getitem__) for d in direct]
    sent = sum(len(smollm2.encode(r.prompt + c)) for r in reqs for c in r.continuations)
    assert scorer.forward_tokens - before < 0.4 * sent  # the shared exemplars and questions ran once


@pytest.mark.slow
def test_prompt_scoring_keeps_its_prefix_in_the_models_own_cache(srv, smollm2):
    """The server's token scorer has no KV cache of its own: the shared question of two choices is
    computed once by the model's prefix cache (the one its loglikelihood uses) and stays there."""
    from capeval.models import load_model

    question = "".join(f"Fact {i}: the {i}th planet has {i + 2} moons.\n" for i in range(1, 9)) + "Which planet has 5 moons?\nAnswer:"
    req = Request("loglikelihood", question, continuations=(" the third", " the fifth"))
    (remote,) = load_model(f"openai:{SERVED}@{srv.base_url}", concurrency=1).loglikelihood([req])
    second = tuple(smollm2.encode(question + " the fifth"))
    shared = len(smollm2.encode(question)) - 1  # both choices start with the question's tokens
    # checked before the model is called directly, which could fill its cache by itself
    assert smollm2.cached_prefix_len(second) >= shared - 1
    (direct,) = smollm2.loglikelihood([req])
    assert remote.logprobs == pytest.approx(direct.logprobs, rel=1e-5, abs=1e-3)
