"""The vLLM backend through its CPU seam: an engine with vLLM's interface computed by transformers
(tests/models/vllm_reference.py) must give the same log-likelihoods, greedy flags and greedy text as
capeval's transformers backend on the same weights, because both backends feed the same tokens.
The real vLLM engine needs a GPU: bench/vllm_check.py is that check."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from vllm_reference import Logprob, TransformersEngine

from capeval.errors import CapevalError, ModelError
from capeval.models import load_model
from capeval.models.vllm import VLLMModel, continuation_score
from capeval.types import GenerationParams, Message, Request


def test_continuation_score_reads_prompt_logprobs_by_token_and_rank():
    tokens = [5, 7, 9, 11]
    plp = [None, {7: Logprob(-1.0, 2), 3: Logprob(-0.5, 1)}, {9: Logprob(-0.25, 1)}, {11: Logprob(-2.0, 1)}]
    assert continuation_score(tokens, plp, 2) == (-2.25, True)
    assert continuation_score(tokens, plp, 3) == (-3.25, False)
    with pytest.raises(ModelError, match="no prompt log-probabilities"):
        continuation_score(tokens, None, 2)


def test_options_and_missing_extra_are_clear_errors():
    with pytest.raises(CapevalError, match="unknown option 'dtyp'.*|did you mean 'dtype'"):
        load_model("vllm:org/name", dtyp="float16")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(CapevalError, match=r"capeval\[vllm\]"):
            load_model("vllm:org/name")


@pytest.fixture(scope="module")
def pair(smollm2):
    engine = TransformersEngine(smollm2.model, smollm2.tokenizer, smollm2.eos_ids)
    return smollm2, VLLMModel("smollm2-ref", engine=engine, model_id="vllm-ref"), engine


@pytest.mark.slow
def test_loglikelihood_matches_the_transformers_backend(pair):
    hf, vl, engine = pair
    reqs = [
        Request(kind="loglikelihood", prompt="Question: What is 2 + 3?\nAnswer:", continuations=(" 5", " 6", " five apples")),
        Request(kind="loglikelihood", prompt="The capital of France is  ", continuations=("Paris", "a city in Europe")),
        Request(kind="loglikelihood", prompt="", continuations=("Hello world",)),
        Request(kind="loglikelihood", prompt=(Message("user", "Say yes or no."),), continuations=("Yes", "No")),
    ]
    a, b = hf.loglikelihood(reqs), vl.loglikelihood(reqs)
    assert engine.calls[-1] == 8  # every (request, continuation) in one engine call
    for x, y in zip(a, b):
        assert x.error is None and y.error is None
        assert y.logprobs == pytest.approx(x.logprobs, rel=1e-5, abs=2e-4)
        assert y.is_greedy == x.is_greedy and y.n_tokens == x.n_tokens
    assert vl.model_id == "vllm-ref|auto"  # never the transformers backend's cache rows


@pytest.mark.slow
def test_greedy_generation_matches_the_transformers_backend(pair):
    hf, vl, _ = pair
    reqs = [
        Request(kind="generate", prompt=(Message("user", "Name three colours."),), params=GenerationParams(max_tokens=20)),
        Request(kind="generate", prompt="def add(a, b):\n", params=GenerationParams(max_tokens=24, stop=("\n\n",))),
        Request(kind="generate", prompt="1, 2, 3,", params=GenerationParams(max_tokens=6)),
    ]
    a, b = hf.generate(reqs), vl.generate(reqs)
    assert [y.text for y in b] == [x.text for x in a]
    assert [y.finish_reason for y in b] == [x.finish_reason for x in a]
    assert b[2].finish_reason == "length" and b[2].completion_tokens == 6


def test_a_prompt_that_cannot_be_rendered_fails_alone():
    class Tok:
        bos_token_id, eos_token_id, bos_token, chat_template = None, 0, None, None

        def encode(self, text, add_special_tokens=True):
            return [1] + [2] * len(text.split())

    engine = SimpleNamespace(SamplingParams=dict, get_tokenizer=lambda: Tok(),
                             generate=lambda prompts, params, use_tqdm=False: [
                                 SimpleNamespace(prompt_token_ids=p["prompt_token_ids"], outputs=[SimpleNamespace(text="ok", token_ids=[3], finish_reason="stop")])
                                 for p in prompts])
    vl = VLLMModel("x", engine=engine, chat_template=None)
    out = vl.generate([Request(kind="generate", prompt=(Message("user", "hi"),)), Request(kind="generate", prompt="plain text")])
    assert "no chat template" in out[0].error and out[1].text == "ok" and out[1].error is None


def test_the_vllm_engine_is_built_with_automatic_prefix_caching(monkeypatch):
    # vLLM itself needs a GPU: a stand-in `vllm` module records how the backend builds its engine
    import sys
    import types

    built: list[dict] = []

    class LLM:
        def __init__(self, **kwargs):
            built.append(kwargs)

        def get_tokenizer(self):
            from transformers import AutoTokenizer

            from capeval.models.bundled import ensure_weights

            return AutoTokenizer.from_pretrained(str(ensure_weights("smollm2-135m-instruct")))

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=dict))
    load_model("vllm:org/name")
    load_model("vllm:org/name", prefix_caching=False)
    assert [b["enable_prefix_caching"] for b in built] == [True, False]
    assert built[0]["model"] == "org/name"
