"""Hugging Face transformers backend: local dirs, hub ids and GGUF files, with shared-context scoring.

One concept per module: `loading` (model, tokenizer, identity), `kv` (shared-prefix KV caches and
row operations on a cache), `scoring` (log-likelihood), `generation` (continuous batching),
`stops` (incremental stop strings), `hidden` (hidden states); `model` composes them as `HFModel`."""

from capeval.models.hf.kv import PREFIX_CACHE_ENTRIES, common_prefix_len, expand_cache
from capeval.models.hf.loading import DEFAULT_BATCH_SIZE, ScoringStats
from capeval.models.hf.model import HFModel, load_hf
from capeval.models.hf.stops import StopWatch

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "PREFIX_CACHE_ENTRIES",
    "HFModel",
    "ScoringStats",
    "StopWatch",
    "common_prefix_len",
    "expand_cache",
    "load_hf",
]
