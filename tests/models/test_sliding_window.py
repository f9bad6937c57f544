"""A sliding-window model (a tiny Gemma 3: three layers see 8 positions, one sees all) scored and
generated through the hf backend's fast paths gives what one plain forward pass per prompt gives.

Rows that follow a cached few-shot prefix are left-padded between the prefix and their own tokens;
full attention masks those pads out, but a sliding window counts them as positions. Before rows of
different lengths were kept apart on such models, 3 of 6 rows here scored differently (by up to
0.05 nats; on Gemma-3-270M, up to 0.80 nats on 4-shot mtbench-category items, 9 of 40 predictions
changed) and 2 of 5 generations changed."""

from __future__ import annotations

import pytest

from capeval.models.hf import HFModel
from capeval.types import GenerationParams, Request
from tiny_model import build_tiny_gemma3

torch = pytest.importorskip("torch")

PREFIX = "Each request below is followed by the kind of task it is. Answer: A\n\n"


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    return HFModel(str(build_tiny_gemma3(tmp_path_factory.mktemp("tiny") / "gemma3")), batch_size=4)


def reference_logprob(m: HFModel, prompt: str, continuation: str) -> float:
    ctx, cont = m.encode_pair(prompt, continuation)
    with torch.no_grad():
        lp = m.model(torch.tensor([ctx + cont])).logits.float().log_softmax(-1)[0]
    return sum(lp[len(ctx) + j - 1, t].item() for j, t in enumerate(cont))


def test_the_model_is_one_with_sliding_windows_shorter_than_its_prompts(gemma):
    assert gemma.same_length_after_prefix(past=1) and not gemma.same_length_after_prefix(past=0)
    assert len(gemma.encode(PREFIX)) > 2 * gemma.model.config.sliding_window
    # answers stored by the versions that scored these rows wrongly are not reused: the id is new
    assert gemma.model_id.endswith("|float32|sw-exact")


@pytest.mark.parametrize("shared", [True, False])
def test_scores_after_a_shared_prefix_and_with_padding_equal_plain_forward_passes(gemma, shared):
    reqs = [
        Request(kind="loglikelihood", prompt=PREFIX + f"Request {i}: write a poem {'x' * i}. Answer:",
                continuations=(" A", " B", " C"), shared_prefix=PREFIX if shared else None)
        for i in range(6)
    ] + [Request(kind="loglikelihood", prompt=PREFIX + "the quick brown fox", shared_prefix=PREFIX if shared else None,
                 continuations=(" jumps over the lazy dog 1, 2, 3", " math"))]
    got = gemma.loglikelihood(reqs)
    # (the two multi-token continuations reuse their context even without a shared prefix)
    assert gemma.last_stats.rows_with_reuse == (8 if shared else 2)
    for r, g in zip(reqs, got):
        want = [reference_logprob(gemma, r.prompt, c) for c in r.continuations]
        assert list(g.logprobs) == pytest.approx(want, rel=1e-5, abs=1e-5), r.prompt


def test_greedy_generation_after_a_shared_prefix_equals_model_generate(gemma):
    reqs = [Request(kind="generate", prompt=PREFIX + f"Request {i}: write {'a poem ' * i}. Answer:", shared_prefix=PREFIX,
                    params=GenerationParams(max_tokens=12)) for i in range(5)]
    outs = gemma.generate(reqs)
    assert gemma.last_stats.rows_with_reuse == 5
    for r, o in zip(reqs, outs):
        ids = torch.tensor([gemma.encode(r.prompt)])
        with torch.no_grad():
            want = gemma.model.generate(ids, max_new_tokens=12, do_sample=False)
        assert o.text == gemma.tokenizer.decode(want[0, ids.shape[1]:], skip_special_tokens=True)
