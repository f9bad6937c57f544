"""DoLa decoding: the pieces on small tensors, and greedy output against transformers' generate().

The reference is transformers' own `generate(dola_layers=..., repetition_penalty=1.2, do_sample=False)`.
transformers >= 4.56 (5.x is installed here) moved DoLa out of the library into the hub repo
`transformers-community/dola`, so the installed version can only run it with the hub reachable (or
that repo in the local hub cache). The reference therefore runs in a subprocess
(tests/interpret/dola_reference.py) with either
  - $CAPEVAL_DOLA_REFERENCE_PATH (default: .cache/dola-reference, which scripts/install.sh fills)
    prepended to its PYTHONPATH: a folder holding a transformers that still has DoLa built in, made with
    `pip install --no-deps --target DIR transformers==4.55.4 huggingface_hub==0.34.4 tokenizers==0.21.4`;
  - or the installed transformers with the hub repo, when it is cached.
Without either the comparison skips, saying why; everything else here runs regardless.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from capeval.errors import ModelError
from capeval.interpret.dola import (
    FILTERED_LOGLIKELIHOOD,
    apply_repetition_penalty,
    candidate_layers,
    contrast,
    jensen_shannon,
    parse_layers,
)
from capeval.types import GenerationParams, Request

REFERENCE = Path(__file__).with_name("dola_reference.py")
DEFAULT_REFERENCE_PATH = Path(__file__).resolve().parents[2] / ".cache" / "dola-reference"
PROMPTS = ["The capital of France is", "Q: Who wrote Hamlet?\nA:", "def fibonacci(n):"]
LAYERS = ["high", "low", [4, 10, 16, 22]]
NEW_TOKENS = 12


# ---- pieces -----------------------------------------------------------------------------------
def test_buckets_are_transformers_buckets():
    # SmolLM2-135M: 30 layers, tied embeddings, so the embedding layer and layer 1 are skipped
    assert candidate_layers("low", 30, True) == [2, 4, 6, 8, 10, 12, 14]
    assert candidate_layers("high", 30, True) == [15, 17, 19, 21, 23, 25, 27, 29]
    # untied: the embeddings are a candidate; deeper than 40 layers: 20-layer windows
    assert candidate_layers("low", 30, False)[0] == 0
    assert candidate_layers("low", 48, False) == list(range(0, 20, 2))
    assert candidate_layers("high", 48, True) == list(range(28, 48, 2))
    assert candidate_layers("low", 2, True) == [1]  # shallow tied model: start == N // 2
    assert candidate_layers([3, 7], 30, True) == [3, 7]


def test_layer_indices_out_of_range_are_refused():
    with pytest.raises(ModelError, match=r"dola_layers \[30\] out of range"):
        candidate_layers([4, 30], 30, True)


def test_parse_layers_from_the_command_line():
    assert parse_layers("high") == "high" and parse_layers("LOW") == "low"
    assert parse_layers([2, 4]) == (2, 4)
    assert parse_layers("2,4,6") == (2, 4, 6) == parse_layers("[2, 4, 6]")
    for bad in ("middle", [], "2,x", [True]):
        with pytest.raises(ModelError, match="dola_layers must be"):
            parse_layers(bad)


def test_contrast_keeps_plausible_tokens_only():
    final = torch.log(torch.tensor([[0.5, 0.3, 0.04, 0.16]]))
    premature = torch.log(torch.tensor([[0.25, 0.5, 0.2, 0.05]]))
    scores = contrast(final, premature)
    # 0.04 < 0.1 * 0.5: filtered; the others are log q_final - log q_premature
    assert scores[0, 2].item() == float("-inf")
    for i in (0, 1, 3):
        assert scores[0, i].item() == pytest.approx(math.log(final[0, i].exp() / premature[0, i].exp()), abs=1e-5)
    # the contrast promotes the token the late layers raised most (index 3: 0.05 -> 0.16) over the
    # final favourite (index 0), and ranks the premature favourite (index 1) last among the kept
    assert scores[0].argmax().item() == 3 and scores[0, 1] == scores[0, [0, 1, 3]].min()


def test_jensen_shannon_prefers_the_layer_that_disagrees():
    final = torch.tensor([[4.0, 0.0, 0.0]])
    premature = torch.stack([torch.tensor([[3.5, 0.0, 0.0]]), torch.tensor([[0.0, 4.0, 0.0]])])
    js = jensen_shannon(final, premature)
    assert js.shape == (2, 1) and js[1, 0] > js[0, 0] > 0
    assert jensen_shannon(final, final[None]).abs().max().item() < 1e-7


def test_repetition_penalty_as_ctrl():
    scores = torch.tensor([[2.0, -1.0, 0.5, -3.0]])
    out = apply_repetition_penalty(scores, [[0, 1, 1]], 1.25)
    assert out[0].tolist() == pytest.approx([1.6, -1.25, 0.5, -3.0])
    assert scores.tolist() == [[2.0, -1.0, 0.5, -3.0]]  # not modified in place


# ---- on the bundled model -----------------------------------------------------------------------
def _reference(weights: str, prompts: list[list[int]]) -> list[list[int]]:
    env = dict(os.environ)
    extra = os.environ.get("CAPEVAL_DOLA_REFERENCE_PATH")
    if not extra and DEFAULT_REFERENCE_PATH.is_dir():  # where scripts/install.sh puts it
        extra = str(DEFAULT_REFERENCE_PATH)
    if extra:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (extra, env.get("PYTHONPATH")) if p)
    job = {"weights": weights, "prompts": prompts, "layers": LAYERS, "max_new_tokens": NEW_TOKENS,
           "repetition_penalty": 1.2}
    done = subprocess.run([sys.executable, str(REFERENCE)], input=json.dumps(job), capture_output=True,
                          text=True, env=env, timeout=600, check=False)
    if done.returncode == 3:
        pytest.skip("no transformers DoLa reference here: " + done.stderr.strip().splitlines()[-1]
                    + " (set CAPEVAL_DOLA_REFERENCE_PATH, see this file's docstring)")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_greedy_dola_matches_transformers_generate():
    from capeval.models import load_model
    from capeval.models.bundled import weights_dir

    requests = [Request("generate", p, params=GenerationParams(max_tokens=NEW_TOKENS)) for p in PROMPTS]
    ours = {}
    for layers in LAYERS:
        model = load_model("smollm2-135m-instruct", dola_layers=layers)  # 1.2 repetition penalty by default
        ours[json.dumps(layers)] = model.generate(requests)  # the three prompts batched, left-padded
    tokenizer = model.tokenizer
    reference = _reference(str(weights_dir("smollm2-135m-instruct")), [model.encode(p) for p in PROMPTS])
    eos = tokenizer.eos_token_id
    k = 0
    for p, prompt in enumerate(PROMPTS):
        for layers in LAYERS:
            ref = reference[k]
            k += 1
            got = ours[json.dumps(layers)][p]
            ref_tokens = ref[: ref.index(eos)] if eos in ref else ref
            assert got.error is None
            assert (got.text, got.completion_tokens) == (tokenizer.decode(ref_tokens), len(ref_tokens)), (
                prompt, layers)
            assert got.finish_reason == ("stop" if eos in ref else "length")
    # DoLa changes something: plain greedy differs from at least one DoLa output
    plain = load_model("smollm2-135m-instruct").generate(requests)
    assert any(r.text != d.text for layers in LAYERS for r, d in zip(plain, ours[json.dumps(layers)]))


@pytest.mark.slow
def test_dola_is_part_of_the_model_identity_and_scores_choices():
    from capeval.models import load_model

    plain = load_model("smollm2-135m-instruct")
    high = load_model("smollm2-135m-instruct", dola_layers="high", dola_repetition_penalty=1.0)
    listed = load_model("smollm2-135m-instruct", dola_layers="[15,21]", fast_paths=False)
    ids = {plain.model_id, high.model_id, listed.model_id}
    assert len(ids) == 3 and "|dola=high;rp=1|" not in high.model_id and high.model_id.endswith("dola=high;rp=1")
    assert listed.model_id.endswith("dola=15,21;rp=1.2")

    # greedy DoLa (no repetition penalty) is the argmax of the same scores loglikelihood sums
    prompt = "The capital of France is"
    text = high.generate([Request("generate", prompt, params=GenerationParams(max_tokens=4))])[0].text
    choices = (text, " a city in Germany", " London")
    ll = high.loglikelihood([Request("loglikelihood", prompt, continuations=choices)])[0]
    assert ll.error is None and ll.is_greedy[0] and not any(ll.is_greedy[1:])
    assert all(math.isfinite(x) for x in ll.logprobs)
    # a continuation token outside the plausibility filter costs the authors' floor
    assert min(ll.logprobs) < FILTERED_LOGLIKELIHOOD / 2
    # DoLa scores are not log-probabilities: they differ from the plain model's
    plain_ll = plain.loglikelihood([Request("loglikelihood", prompt, continuations=choices)])[0]
    assert plain_ll.logprobs != ll.logprobs

    # the shared-context fast paths give the same DoLa scores as one sequence per choice
    ll_listed = listed.loglikelihood([Request("loglikelihood", prompt, continuations=choices)])[0]
    fast = load_model("smollm2-135m-instruct", dola_layers=[15, 21])
    ll_fast = fast.loglikelihood([Request("loglikelihood", prompt, continuations=choices)])[0]
    assert ll_fast.logprobs == pytest.approx(ll_listed.logprobs, rel=1e-5, abs=1e-3)

    with pytest.raises(ModelError, match="out of range"):
        load_model("smollm2-135m-instruct", dola_layers=[40])
