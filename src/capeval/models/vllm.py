"""`vllm:<folder | hub id>`: vLLM's offline engine on GPUs.

The backend feeds vLLM token ids, never text: prompts are rendered and tokenized by the same code as
the transformers backend (`models.tokenization`), so both backends generate from, and score, exactly
the same tokens. Generation passes one `SamplingParams` per request (greedy at temperature 0, else a
seed derived from the request as the transformers backend does); log-likelihood asks for the
prompt's log-probabilities (`prompt_logprobs`) of context + continuation and sums those of the
continuation's tokens, greedy when each of them has vocabulary rank 1. vLLM batches everything it
is given itself.

The engine is built from `vllm.LLM` unless one is passed (`engine=`): anything with vLLM's
`get_tokenizer()` and `generate(prompts, sampling_params, use_tqdm=...)` returning `RequestOutput`s,
and a `SamplingParams` attribute taking vLLM's field names.
That seam is what runs on CPU in the tests (an engine answering through transformers); the GPU
check is `bench/vllm_check.py`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from capeval.errors import MissingExtraError, ModelError
from capeval.models.base import check_options, option_names, register_backend, sampling_seed
from capeval.models.fingerprint import settings_tag, source_identity
from capeval.models.tokenization import PromptTokens
from capeval.types import Request, Response


class VLLMModel(PromptTokens):
    """A model in vLLM's offline engine.

    Args:
        spec: a local model folder or a hub id.
        dtype: vLLM's dtype ("auto", "bfloat16", "float16", "float32").
        max_length: context window (vLLM's max_model_len; default: the model's).
        chat_template: as the transformers backend (None: the tokenizer's, for chat prompts).
        revision: hub revision.
        tensor_parallel_size: GPUs to shard the model over.
        gpu_memory_utilization: share of GPU memory vLLM may take.
        model_id: the name in the cache key's model identity (default "vllm:<resolved path or hub id>");
            the files' fingerprint or the hub commit is always added, as for the transformers backend.
        concurrency: accepted and ignored (vLLM schedules its own batches).
        prefix_caching: vLLM's automatic prefix caching (`enable_prefix_caching`, on by default):
            requests that start with the same tokens (a task's few-shot exemplars, a judge's
            instructions) reuse the KV blocks already computed for them. It does not change outputs;
            vLLM skips the cache for requests that ask for prompt log-probabilities (log-likelihood).
        engine: an engine object to use instead of building `vllm.LLM` (the CPU test seam).
    """

    def __init__(
        self,
        spec: str,
        dtype: str = "auto",
        max_length: int | None = None,
        chat_template: bool | str | None = None,
        revision: str | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        model_id: str | None = None,
        concurrency: int | None = None,
        prefix_caching: bool = True,
        engine: Any = None,
    ) -> None:
        if engine is None:
            try:
                from vllm import LLM, SamplingParams
            except ImportError:
                raise MissingExtraError("vllm", "vllm") from None
            self.sampling_params = SamplingParams
            try:
                engine = LLM(
                    model=spec, dtype=dtype, max_model_len=max_length, revision=revision,
                    tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
                    enable_prefix_caching=prefix_caching,
                )
            except (OSError, ValueError, RuntimeError) as e:
                raise ModelError(f"vLLM cannot load '{spec}': {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        else:
            # an engine passed in brings its SamplingParams class (vLLM's field names)
            self.sampling_params = engine.SamplingParams
        self.engine = engine
        self.tokenizer = engine.get_tokenizer()
        self.chat_template = chat_template
        self.setup_tokens(self.tokenizer)
        self.max_length = int(max_length or getattr(engine, "max_model_len", None) or 4096)
        # the same identity as the transformers backend: the folder's fingerprint or the hub commit
        source_id = source_identity(spec, revision)
        base_id = model_id or "vllm:" + source_id.name
        options = settings_tag(str(dtype), chat_template, max_length)
        self.model_id = base_id + source_id.tag() + options
        self.identity = source_id.record(self.model_id, base_id + options)

    # ---- generation -------------------------------------------------------------------------
    def generate(self, requests: Sequence[Request]) -> list[Response]:
        out: list[Response | None] = [None] * len(requests)
        prompts, params, index = [], [], []
        for i, req in enumerate(requests):
            try:
                tokens = self.encode(self.render(req.prompt))
            except Exception as e:  # noqa: BLE001 - a request that cannot be rendered fails alone
                out[i] = Response(error=f"{type(e).__name__}: {e}")
                continue
            p = req.params
            budget = max(1, self.max_length - max(1, p.max_tokens))
            seed = sampling_seed(req)
            prompts.append({"prompt_token_ids": tokens[-budget:] or [self.prefix_token_id]})
            params.append(self.sampling_params(
                n=1, max_tokens=p.max_tokens, temperature=max(0.0, p.temperature), top_p=p.top_p,
                stop=list(p.stop) or None, seed=None if seed is None else seed % (2**31),
            ))
            index.append(i)
        if prompts:
            started = time.perf_counter()
            results = self.engine.generate(prompts, params, use_tqdm=False)
            per = (time.perf_counter() - started) / len(prompts)
            for i, r in zip(index, results):
                c = r.outputs[0]
                out[i] = Response(
                    text=c.text, finish_reason="length" if c.finish_reason == "length" else "stop",
                    prompt_tokens=len(r.prompt_token_ids or ()), completion_tokens=len(c.token_ids), latency_s=per,
                )
        return [r if r is not None else Response(error="not generated") for r in out]

    # ---- log-likelihood ---------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[Request]) -> list[Response]:
        out: list[Response | None] = [None] * len(requests)
        rows: list[tuple[int, int, list[int], int]] = []  # (request, choice, tokens, continuation length)
        n_tokens: dict[int, list[int]] = {}
        for i, req in enumerate(requests):
            try:
                pairs = self.encode_choices(self.render(req.prompt), req.continuations)
            except Exception as e:  # noqa: BLE001 - a request that cannot be rendered fails alone
                out[i] = Response(error=f"{type(e).__name__}: {e}")
                continue
            n_tokens[i] = [len(k) for _, k in pairs]
            for j, (ctx, cont) in enumerate(pairs):
                if cont:
                    # the context is cut from the left to fit, as the transformers backend does
                    rows.append((i, j, (ctx + cont)[-(self.max_length):], len(cont)))
        scores: dict[tuple[int, int], tuple[float, bool]] = {}
        if rows:
            started = time.perf_counter()
            params = self.sampling_params(max_tokens=1, temperature=0.0, prompt_logprobs=1, detokenize=False)
            results = self.engine.generate([{"prompt_token_ids": t} for _, _, t, _ in rows], params, use_tqdm=False)
            elapsed = time.perf_counter() - started
            for (i, j, tokens, n), r in zip(rows, results):
                scores[(i, j)] = continuation_score(tokens, r.prompt_logprobs, n)
        else:
            elapsed = 0.0
        live = [i for i in range(len(requests)) if out[i] is None]
        for i in live:
            got = [scores.get((i, j), (0.0, True)) for j in range(len(requests[i].continuations))]
            out[i] = Response(
                logprobs=tuple(lp for lp, _ in got), is_greedy=tuple(g for _, g in got), n_tokens=tuple(n_tokens[i]),
                latency_s=elapsed / max(1, len(live)),
            )
        return [r if r is not None else Response(error="not scored") for r in out]


def continuation_score(tokens: Sequence[int], prompt_logprobs: Sequence[Any], n: int) -> tuple[float, bool]:
    """(summed log-probability, greedy) of the last `n` tokens from vLLM's prompt_logprobs: one
    entry per prompt position (None at position 0), each a dict token id -> Logprob(logprob, rank)
    that always holds the prompt's own token."""
    if prompt_logprobs is None or len(prompt_logprobs) != len(tokens):
        raise ModelError("vLLM returned no prompt log-probabilities for every prompt token")
    total, greedy = 0.0, True
    for pos in range(len(tokens) - n, len(tokens)):
        entry = prompt_logprobs[pos][tokens[pos]]
        total += float(entry.logprob)
        greedy = greedy and entry.rank == 1
    return total, greedy


@register_backend("vllm")
def load_vllm(spec: str, **options: Any) -> VLLMModel:
    check_options("vllm", options, [o for o in option_names(VLLMModel) if o != "engine"])
    return VLLMModel(spec, **options)
