"""The hf backend's model: loading, scoring, hidden states and generation composed in one class."""

from __future__ import annotations

from typing import Any

from capeval.models.base import check_options, option_names, register_backend
from capeval.models.hf.generation import Generation
from capeval.models.hf.hidden import HiddenStates


class HFModel(Generation, HiddenStates):
    """A causal language model run with transformers on CPU or GPU.

    Args:
        spec: a local model folder, a hub id (`org/name`), or a `.gguf` file (or a folder plus
            `gguf_file`). GGUF weights are de-quantised on load.
        batch_size: sequences per forward pass (rows are length-sorted, so padding stays small).
        dtype: "float32" (default on CPU), "bfloat16", "float16" or "auto".
        device: "cpu", "cuda", "cuda:1", ...; default: cuda when available.
        max_length: context window in tokens (default: the model's `max_position_embeddings`).
        chat_template: None applies the tokenizer's chat template to chat-message prompts (an error
            if it has none); True also wraps plain-text prompts as one user message; False refuses
            chat prompts; a string is a Jinja chat template to use instead of the tokenizer's.
        revision: hub revision (commit, tag or branch).
        model_id: the name in the cache key's model identity, in place of the resolved path or hub
            id (the bundled models use their package name and version). What the files hold is
            always added: the local files' fingerprint (`#<16 hex>`, models.fingerprint) or the hub
            snapshot's commit (`@<commit>`); `identity` records both for the run config.
        fast_paths: False scores every continuation as its own full sequence (the plain
            computation, for checking the fast paths; the results are the same).
        concurrency: accepted and ignored: a command's --concurrency goes to every model it loads
            (judges included), and a local model's work is bounded by `batch_size`.
        dola_layers: DoLa decoding (capeval.interpret.dola): "low", "high" or a list of premature
            layer indices; generate() and loglikelihood() then use DoLa scores. None: plain.
        dola_repetition_penalty: DoLa generation's repetition penalty (the paper's 1.2).
        dola_final_norm: apply the final norm before the head on early exits (the DoLa authors'
            code and transformers apply none).
        cuda_graphs: generation's decoding steps in fixed-shape slots, each step one CUDA graph
            replay (models/hf/graph_decode.py). None (default): on CUDA; False: never (the
            continuous batching of the CPU, with guessed tokens); True: also off CUDA, where the
            same fixed-shape steps run without a graph (a check of that path).
    """


@register_backend("hf")
def load_hf(spec: str, **options: Any) -> HFModel:
    """`hf:<folder | hub id | file.gguf>`: a transformers causal LM."""
    check_options("hf", options, option_names(HFModel))
    return HFModel(spec, **options)
