"""KV caches shared by scoring, generation and the server's prompt scorer: shared-prefix caches kept
between calls, and the row-level operations on a transformers cache (expand, join, crop)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from capeval.models.hf.loading import LoadedModel, torch_module
from capeval.types import Request

# KV caches of shared prefixes kept between calls: the engine sends requests in chunks, and every
# chunk of a few-shot task starts with the same exemplars.
PREFIX_CACHE_ENTRIES = 4
# Reusing fewer tokens than this saves less than the bookkeeping costs.
MIN_PREFIX_REUSE = 8


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixKV(LoadedModel):
    """The KV caches of shared prefixes (few-shot exemplars, a question shared by its choices),
    computed once and kept for the next calls; the one implementation that loglikelihood,
    generation and `models/serve/prompt_logprobs.py` use."""

    def prefix_cache(self, key: tuple[int, ...]) -> Any:
        """The KV cache of `key`'s tokens, computed once (extending the longest cached prefix).
        Callers read it through `expand_cache`, which leaves the stored cache as it is."""
        torch = torch_module()
        if key in self._prefix_lru:
            self._prefix_lru.move_to_end(key)
            return self._prefix_lru[key]
        start, cache = 0, None
        for k in self._prefix_lru:
            if len(k) > start and len(k) <= len(key) and key[: len(k)] == k:
                start, cache = len(k), self._prefix_lru[k]
        if cache is None:
            from transformers import DynamicCache

            cache = DynamicCache(config=self.model.config)
        else:
            cache = expand_cache(cache, 1)
        with torch.inference_mode():
            ids = torch.tensor([list(key[start:])], dtype=torch.long, device=self.device)
            kwargs: dict[str, Any] = {"use_cache": True, self._cache_kw: cache}
            if self._has_logits_to_keep:
                kwargs["logits_to_keep"] = 1
            self.model(ids, **kwargs)
        self.last_stats.prefix_computations += 1
        self._prefix_lru[key] = cache
        while len(self._prefix_lru) > PREFIX_CACHE_ENTRIES:
            self._prefix_lru.popitem(last=False)
        return cache

    def same_length_after_prefix(self, past: int) -> bool:
        """Whether rows that follow `past` cached prefix tokens must be batched only with rows of
        their own length. A left-padded row after a prefix has its pads between the prefix and its
        own tokens; full attention masks them out exactly, but a sliding window (Gemma 2/3, Mistral)
        counts positions, pads included, so its window would end early and the row's scores change."""
        return past > 0 and not self._joinable_cache

    def cached_prefix_len(self, key: Sequence[int]) -> int:
        """The length of the longest stored prefix that `key` starts with (0: none)."""
        return max((len(k) for k in self._prefix_lru if tuple(key[: len(k)]) == k), default=0)

    def _shared_prefix_hint(self, req: Request, text: str) -> tuple[int, ...] | None:
        """The tokens of the request's `shared_prefix` when its rendered prompt starts with it."""
        if req.shared_prefix and isinstance(req.prompt, str) and text.startswith(req.shared_prefix):
            return self._prefix_tokens(req.shared_prefix)
        return None

    def _reuse_key(self, hint: tuple[int, ...] | None, tokens: Sequence[int], keep: int) -> tuple[int, ...]:
        """The leading tokens of `tokens` to take from the cached prefix `hint` (() = none): those the
        two tokenizations share, leaving the last `keep` positions to be computed."""
        if not hint:
            return ()
        m = min(common_prefix_len(hint, tokens), len(tokens) - keep)
        if m >= MIN_PREFIX_REUSE:
            return tuple(tokens[:m])
        self.last_stats.shared_prefix_fallbacks += 1
        return ()

    def _prefix_tokens(self, prefix: str) -> tuple[int, ...]:
        # every item of a few-shot task carries the same prefix text: tokenize it once
        tokens = self._prefix_token_memo.get(prefix)
        if tokens is None:
            if len(self._prefix_token_memo) >= 16:
                self._prefix_token_memo.clear()
            tokens = self._prefix_token_memo[prefix] = tuple(self.encode(prefix))
        return tokens


def expand_cache(base: Any, n: int) -> Any:
    """A cache holding `base`'s prefix for `n` rows, leaving `base` itself untouched."""
    from transformers.cache_utils import DynamicLayer

    cache = copy.copy(base)
    layers = []
    for layer in base.layers:
        new = copy.copy(layer)
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if isinstance(layer, DynamicLayer) and keys is not None and values is not None and keys.dim() == 4:
            # a view: the forward pass concatenates new keys onto it, which copies once
            new.keys = keys.expand(n, *keys.shape[1:])
            new.values = values.expand(n, *values.shape[1:])
        else:
            new = copy.deepcopy(layer)
            if n > 1:
                new.batch_repeat_interleave(n)
        layers.append(new)
    cache.layers = layers
    return cache
