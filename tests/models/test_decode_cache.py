"""Continuous batching's preallocated KV cache: rows join, leave and grow without changing a token."""

from __future__ import annotations

from pathlib import Path

import pytest

from capeval.models import load_model
from capeval.types import GenerationParams, Request
from tiny_model import build_tiny_llama

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model")


def columns(rows: int, width: int, start: float) -> tuple:
    keys = torch.arange(rows * 2 * width * 4, dtype=torch.float32).reshape(rows, 2, width, 4) + start
    return keys, -keys


def test_layer_appends_crops_selects_and_joins_as_plain_tensors_would():
    from capeval.models.hf.decode_cache import GrowingLayer

    keys, values = columns(3, 5, 0.0)
    layer = GrowingLayer(1, keys, values)
    capacity = layer._k.shape[-2]
    plain_k, plain_v = keys, values
    for step in range(capacity):  # past the first allocation: the buffers grow and keep their columns
        k, v = columns(3, 1, 1000.0 * (step + 1))
        got_k, got_v = layer.update(k, v)
        plain_k, plain_v = torch.cat([plain_k, k], dim=-2), torch.cat([plain_v, v], dim=-2)
        assert torch.equal(got_k, plain_k) and torch.equal(got_v, plain_v)
    assert layer._k.shape[-2] > capacity
    assert layer.get_seq_length() == 5 + capacity

    layer.crop_left(4)
    plain_k, plain_v = plain_k[:, :, 4:], plain_v[:, :, 4:]
    assert torch.equal(layer.keys, plain_k) and layer.get_seq_length() == plain_k.shape[-2]
    for keep in ([0, 2], [1, 0]):  # a row leaves (the rows after it move up in place), then a reorder
        layer.batch_select_indices(torch.tensor(keep))
        plain_k, plain_v = plain_k[keep], plain_v[keep]
        assert torch.equal(layer.keys, plain_k) and torch.equal(layer.values, plain_v)

    # a shorter newcomer is right-aligned: zero columns on its left, the running rows unchanged
    new_k, new_v = columns(1, 3, 5e5)
    width = plain_k.shape[-2]
    layer.join(GrowingLayer(0, new_k, new_v), width, extra=2)
    assert torch.equal(layer.keys[:2], plain_k) and torch.equal(layer.values[:2], plain_v)
    assert torch.equal(layer.keys[2:, :, width - 3 :], new_k)
    assert not layer.keys[2:, :, : width - 3].any() and not layer.values[2:, :, : width - 3].any()
    # and decoding goes on in place for all three rows
    k, v = columns(3, 1, -7.0)
    got_k, _ = layer.update(k, v)
    assert torch.equal(got_k[:, :, -1:], k) and got_k.shape[-2] == width + 1


def test_continuous_batching_on_growing_caches_gives_model_generate_tokens(tiny, monkeypatch):
    # batch 2, prompts of different lengths and budgets, and one column allocated ahead, so rows
    # join, leave, crop and grow the cache many times: every greedy output is model.generate's
    from capeval.models.hf import decode_cache, generation

    monkeypatch.setattr(generation, "MAX_ROOM", 1)
    monkeypatch.setattr(decode_cache, "MIN_SPARE", 1)
    grown = []
    update = decode_cache.GrowingLayer.update

    def counted(self, *args, **kwargs):
        before = self._k if self.is_initialized else None
        out = update(self, *args, **kwargs)
        grown.append(before is not None and self._k is not before)
        return out

    monkeypatch.setattr(decode_cache.GrowingLayer, "update", counted)
    model = load_model(f"hf:{tiny}", batch_size=2)
    prompts = ["the cat sat on", "a b c", "once upon a time there was a dog that ran", "x", "red green blue", "hello"]
    budgets = [9, 4, 14, 6, 11, 3]
    reqs = [Request("generate", p, params=GenerationParams(max_tokens=n)) for p, n in zip(prompts, budgets)]
    got = model.generate(reqs)
    assert model.last_stats.continuous_fallbacks == 0
    assert sum(grown) >= 2 * 2  # decoding steps that grew the buffers (both layers, twice)
    for prompt, n, response in zip(prompts, budgets, got):
        ids = torch.tensor([model.encode(prompt)])
        with torch.inference_mode():
            out = model.model.generate(ids, max_new_tokens=n, do_sample=False, pad_token_id=model.pad_id)
        new = out[0, ids.shape[1] :].tolist()
        assert response.completion_tokens == len([t for t in new if t not in model.eos_ids])
        assert response.text == model.tokenizer.decode(new, skip_special_tokens=True)


def test_shared_prefix_attention_equals_attention_over_the_whole_sequence():
    # the prefix read once for all rows and merged by log-sum-exp: the same attention as sdpa over
    # prefix + each row's columns, for a decoding step and for a left-padded prefill
    from types import SimpleNamespace

    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from capeval.models.hf.prefix_attention import SharedPrefix, shared_prefix_attention

    gen = torch.Generator().manual_seed(0)
    rows, heads, kv_heads, dim, prefix, own = 3, 6, 2, 8, 11, 5
    module = SimpleNamespace(layer_idx=0, num_key_value_groups=heads // kv_heads, is_causal=True)
    pk, pv = (torch.randn(1, kv_heads, prefix, dim, generator=gen) for _ in range(2))
    shared = SharedPrefix(SimpleNamespace(layers=[SimpleNamespace(keys=pk, values=pv)]))
    k, v = (torch.randn(rows, kv_heads, own, dim, generator=gen) for _ in range(2))
    full_k, full_v = torch.cat([pk.expand(rows, -1, -1, -1), k], 2), torch.cat([pv.expand(rows, -1, -1, -1), v], 2)
    for q in (1, 3):
        query = torch.randn(rows, heads, q, dim, generator=gen)
        # row 0 left-padded by two columns; causal within the last q columns
        mask = torch.ones(rows, 1, q, own, dtype=torch.bool).tril(own - q)
        mask[0, :, :, :2] = False
        full_mask = torch.cat([torch.ones(rows, 1, q, prefix, dtype=torch.bool), mask], -1)
        got, _ = shared_prefix_attention(module, query, k, v, mask, scaling=0.3, shared_prefix=shared)
        want, _ = sdpa_attention_forward(module, query, full_k, full_v, full_mask, scaling=0.3)
        assert got.shape == want.shape == (rows, q, heads, dim)
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    assert shared.reads == 2  # each call counted: the model checks that every layer read the prefix


def few_shot_requests() -> list[Request]:
    prefix = "the cat sat on the mat. the dog sat on the log. " * 3
    questions = ["a red", "once upon a time the", "x y", "hello there"]
    return [Request("generate", prefix + q, params=GenerationParams(max_tokens=7 + i), shared_prefix=prefix)
            for i, q in enumerate(questions)]


def assert_model_generate_texts(model, reqs, got) -> None:
    for req, response in zip(reqs, got):
        ids = torch.tensor([model.encode(req.prompt)])
        with torch.inference_mode():
            out = model.model.generate(ids, max_new_tokens=req.params.max_tokens, do_sample=False, pad_token_id=model.pad_id)
        assert response.text == model.tokenizer.decode(out[0, ids.shape[1] :].tolist(), skip_special_tokens=True)


def test_few_shot_rows_decode_from_the_shared_prefix_with_model_generate_tokens(tiny):
    model = load_model(f"hf:{tiny}", batch_size=2)
    assert model._shared_prefix_attention
    reqs = few_shot_requests()
    got = model.generate(reqs)
    stats = model.last_stats
    assert stats.rows_with_reuse == 4 and stats.continuous_fallbacks == 0 and stats.prefix_tokens_reused > 4 * 30
    assert_model_generate_texts(model, reqs, got)


def test_attention_that_ignores_the_shared_prefix_falls_back_to_the_whole_cache(tiny, monkeypatch):
    # a model whose layers attend without the prefix would answer from the rows' own columns only:
    # the first forward pass notices, and the static batches (prefix in every row) answer instead
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from capeval.models.hf.prefix_attention import NAME

    def blind(module, query, key, value, mask, shared_prefix=None, **kwargs):
        return sdpa_attention_forward(module, query, key, value, mask, **kwargs)

    monkeypatch.setitem(AttentionInterface._global_mapping, NAME, blind)
    model = load_model(f"hf:{tiny}", batch_size=2)
    reqs = few_shot_requests()
    got = model.generate(reqs)
    assert model.last_stats.continuous_fallbacks == 1 and not model._shared_prefix_attention
    assert_model_generate_texts(model, reqs, got)
    model.generate(reqs)
    assert model.last_stats.continuous_fallbacks == 0  # continuous again, with the prefix in every row


LOOPING = ["the cat sat on", "a b c a b c a b c a b", "once upon a time there was a dog that ran", "x",
           "red green blue", "hello hello hello hello"]


@pytest.mark.parametrize("shared", [False, True], ids=["own-cache", "shared-prefix"])
def test_guessed_tokens_are_checked_so_greedy_outputs_are_model_generate_tokens(tiny, monkeypatch, shared):
    # prompt lookup (lookup.py) guesses a row's next tokens and one step feeds them all: kept only
    # where each was the greedy pick, the rejected ones' cache columns masked. The tiny model's
    # loops are guessed right, its other tokens mostly not: both must leave model.generate's tokens
    from capeval.models.hf import decode_cache, generation

    monkeypatch.setattr(generation, "DRAFT_BUDGET", 4.0)  # room to guess with 2 rows of batch 2
    monkeypatch.setattr(generation, "MAX_ROOM", 1)  # and the buffers grow under the guesses
    monkeypatch.setattr(decode_cache, "MIN_SPARE", 1)
    model = load_model(f"hf:{tiny}", batch_size=2)
    prefix = "the cat sat on the mat. the dog sat on the log. " * 3 if shared else ""
    reqs = [Request("generate", prefix + p, params=GenerationParams(max_tokens=30 + 3 * i),
                    shared_prefix=prefix or None) for i, p in enumerate(LOOPING)]
    got = model.generate(reqs)
    stats = model.last_stats
    assert stats.continuous_fallbacks == 0 and stats.rows_with_reuse == (6 if shared else 0)
    assert stats.draft_tokens > stats.accepted_draft_tokens > 20  # guesses kept and guesses rejected
    assert_model_generate_texts(model, reqs, got)
    # and without guessing, the same texts
    monkeypatch.setattr(generation, "DRAFT_BUDGET", 0.0)
    assert [r.text for r in model.generate(reqs)] == [r.text for r in got]
    assert model.last_stats.draft_tokens == 0


def test_sampled_rows_are_not_guessed_and_draw_as_alone(tiny, monkeypatch):
    from capeval.models.hf import generation

    monkeypatch.setattr(generation, "DRAFT_BUDGET", 4.0)
    model = load_model(f"hf:{tiny}", batch_size=2)
    sampled = Request("generate", "hello hello hello hello", params=GenerationParams(max_tokens=30, temperature=1.0, seed=5))
    alone = model.generate([sampled])[0].text
    assert model.last_stats.draft_tokens == 0
    greedy = [Request("generate", p, params=GenerationParams(max_tokens=30)) for p in LOOPING[:3]]
    together = model.generate([greedy[0], sampled, *greedy[1:]])
    assert model.last_stats.draft_tokens > 0 and together[1].text == alone
