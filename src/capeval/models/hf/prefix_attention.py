"""Attention over a few-shot prefix shared by every row of a batch, read once instead of once per row.

The rows' caches hold only what follows the prefix; the prefix's keys and values stay in the one
stored prefix cache. Each layer attends to the prefix with all rows' queries in one pass over its
keys (cascade attention) and to each row's own columns as usual, and merges the two softmaxes by
their log-sum-exp. The result is the attention over the whole sequence; only the order of the
floating-point sums differs. At 8 shots the prefix is most of every row's columns, and reading it
16 times per step was the attention's cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

# The attention implementation name the hf backend gives models that use sdpa.
NAME = "capeval_shared_prefix_sdpa"


@dataclass
class SharedPrefix:
    """The `shared_prefix` a forward pass is given: the prefix's one-row cache, and how many
    attention calls read it (a model whose layers do not pass it on reads it 0 times, and its
    caller must not trust the output)."""

    cache: Any
    reads: int = 0


def _flash(query: Any, key: Any, value: Any, mask: Any, scale: float | None) -> tuple[Any, Any]:
    """(output [b, h, q, d], log-sum-exp [b, h, q]) of softmax attention; the kernel sdpa runs on CPU."""
    if mask is not None and mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=query.dtype, device=query.device).masked_fill_(~mask, float("-inf"))
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, 0.0, False, attn_mask=mask, scale=scale
    )
    return out, lse


def shared_prefix_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    shared_prefix: SharedPrefix | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """sdpa, or with `shared_prefix` (the tokens before `key`'s columns, which every row attends
    to in full) the attention over the prefix and `key` together."""
    if shared_prefix is None or query.device.type != "cpu":
        return sdpa_attention_forward(  # type: ignore[no-any-return]
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    shared_prefix.reads += 1
    layer = shared_prefix.cache.layers[module.layer_idx]
    rows, heads, q, dim = query.shape
    kv_heads = layer.keys.shape[1]
    group = heads // kv_heads
    # the prefix: every query of every row in one batch per KV head
    grouped = query.reshape(rows, kv_heads, group * q, dim).transpose(0, 1).reshape(1, kv_heads, rows * group * q, dim)
    out_p, lse_p = _flash(grouped, layer.keys, layer.values, None, scaling)
    out_p = out_p.reshape(kv_heads, rows, group * q, dim).transpose(0, 1).reshape(rows, heads, q, dim)
    lse_p = lse_p.reshape(kv_heads, rows, group * q).transpose(0, 1).reshape(rows, heads, q)
    # the rows' own columns
    if q == 1:  # the query heads of one KV head stand in for the query positions (no key copies)
        out_s, lse_s = _flash(query.reshape(rows, kv_heads, group, dim), key, value, attention_mask, scaling)
    else:
        mask = attention_mask
        if mask is None:  # causal over the last q columns
            cols = key.shape[-2]
            mask = torch.ones((q, cols), dtype=torch.bool, device=query.device).tril(cols - q)
        out_s, lse_s = _flash(query, repeat_kv(key, group), repeat_kv(value, group), mask, scaling)
    out_s, lse_s = out_s.reshape(rows, heads, q, dim), lse_s.reshape(rows, heads, q)
    lse = torch.logaddexp(lse_p, lse_s)
    out = out_p * torch.exp(lse_p - lse).unsqueeze(-1) + out_s * torch.exp(lse_s - lse).unsqueeze(-1)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, shared_prefix_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)
