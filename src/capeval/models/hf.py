"""Hugging Face transformers backend: local dirs, hub ids and GGUF files, with shared-context scoring."""

from __future__ import annotations

import copy
import hashlib
import inspect
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capeval.errors import ModelError
from capeval.models.base import batch_order, check_options, option_names, register_backend, sampling_seed
from capeval.models.fingerprint import source_identity
from capeval.models.tokenization import PromptTokens
from capeval.types import GenerationParams, Request, Response

DEFAULT_BATCH_SIZE = 16
# KV caches of shared prefixes kept between calls: the engine sends requests in chunks, and every
# chunk of a few-shot task starts with the same exemplars.
PREFIX_CACHE_ENTRIES = 4
# Reusing fewer tokens than this saves less than the bookkeeping costs.
MIN_PREFIX_REUSE = 8
# Continuous batching refills the batch once this share of its slots (1/n) is free: each refill is
# one more forward pass, so rows are admitted a few at a time.
REFILL_FRACTION = 4


def _torch() -> Any:
    import torch

    return torch


@dataclass
class _Target:
    """One continuation scored on a row: its tokens are predicted by the row's last positions."""

    request: int
    choice: int
    tokens: list[int]


@dataclass
class _Row:
    """One sequence of a forward pass: `tokens` = context + continuation[:-1] (lm-eval's layout).

    `reuse` is how many leading tokens come from a cached prefix instead of being recomputed."""

    tokens: list[int]
    targets: list[_Target]
    reuse: int = 0

    @property
    def keep(self) -> int:
        return max((len(t.tokens) for t in self.targets), default=1)


@dataclass
class ScoringStats:
    """What the last loglikelihood or generate call did; tests and the benchmark read it (a
    generation row is one request)."""

    rows: int = 0
    forward_passes: int = 0
    prefix_tokens_reused: int = 0
    prefix_computations: int = 0
    rows_with_reuse: int = 0
    shared_prefix_fallbacks: int = 0


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class HFModel(PromptTokens):
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
    """

    def __init__(
        self,
        spec: str,
        batch_size: int = DEFAULT_BATCH_SIZE,
        dtype: str | None = None,
        device: str | None = None,
        max_length: int | None = None,
        chat_template: bool | str | None = None,
        revision: str | None = None,
        gguf_file: str | None = None,
        trust_remote_code: bool = False,
        model_id: str | None = None,
        fast_paths: bool = True,
        concurrency: int | None = None,
        dola_layers: str | list[int] | None = None,
        dola_repetition_penalty: float = 1.2,
        dola_final_norm: bool = False,
    ) -> None:
        torch = _torch()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.batch_size = max(1, int(batch_size))
        self.fast_paths = fast_paths
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or ("float32" if self.device == "cpu" else "bfloat16")
        if dtype != "auto" and not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ModelError(f"unknown dtype '{dtype}'", "use float32, bfloat16, float16 or auto")
        self.dtype = dtype
        source, gguf_file = _resolve_source(spec, gguf_file)
        self.source = source
        self.gguf_file = gguf_file
        load_kwargs: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
        if gguf_file:
            load_kwargs["gguf_file"] = gguf_file
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, **load_kwargs)
            self.model = AutoModelForCausalLM.from_pretrained(
                source, dtype=dtype if dtype == "auto" else getattr(torch, dtype), **load_kwargs
            )
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise ModelError(
                f"cannot load model '{spec}': {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                _load_hint(spec),
            ) from None
        self.model.to(self.device)  # type: ignore[arg-type]
        self.model.eval()
        self.dola = None
        if dola_layers is not None:
            from capeval.interpret.dola import DoLa, DoLaSettings, parse_layers

            settings = DoLaSettings(parse_layers(dola_layers), float(dola_repetition_penalty), bool(dola_final_norm))
            self.dola = DoLa(self.model, settings)
        self.chat_template = chat_template
        if chat_template is True and not self.tokenizer.chat_template:
            raise ModelError(
                f"model '{spec}' has no chat template", "pass chat_template=None or a Jinja template string"
            )
        config = self.model.config
        self.max_length = int(
            max_length
            or getattr(config, "max_position_embeddings", None)
            or min(self.tokenizer.model_max_length, 4096)
        )
        tok = self.tokenizer
        self.pad_id = next(i for i in (tok.pad_token_id, tok.eos_token_id, 0) if i is not None)
        self.setup_tokens(tok)
        self.eos_ids = _eos_ids(self.model, tok)
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._has_logits_to_keep = "logits_to_keep" in params
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        # continuous batching joins rows' caches column by column: plain full-attention layers only
        layers = DynamicCache(config=config).layers
        self._joinable_cache = bool(layers) and all(type(layer) is DynamicLayer for layer in layers)
        self._prefix_lru: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._prefix_token_memo: dict[str, tuple[int, ...]] = {}
        self.last_stats = ScoringStats()
        # after loading: a hub id's snapshot commit is known once transformers has fetched it
        source_id = source_identity(source, revision, gguf_file)
        base_id = model_id or "hf:" + source_id.name
        options = f"|{dtype}"
        if chat_template is True:
            options += "|chat=always"
        elif chat_template is False:
            options += "|chat=never"
        elif isinstance(chat_template, str):
            options += "|chat=" + hashlib.sha256(chat_template.encode()).hexdigest()[:12]
        if max_length:
            options += f"|ctx={max_length}"
        if self.dola is not None:
            options += "|" + self.dola.settings.tag
        self.model_id = base_id + source_id.tag() + options
        self.identity = source_id.record(self.model_id, base_id + options)

    # ---- log-likelihood ---------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[Request]) -> list[Response]:
        """Summed log-probability, greedy flag and token count of every continuation.

        Fast paths, each exact (the tokens fed are always those of the whole prompt):
        single-token continuations (letters) share one row and read the last position only;
        a `shared_prefix` (few-shot exemplars) has its KV cache computed once and reused by every
        request whose tokens start with it; multi-token continuations reuse their context's cache.
        """
        self.last_stats = ScoringStats()
        responses: list[Response | None] = [None] * len(requests)
        rows: list[_Row] = []
        reuse_hint: list[tuple[int, ...] | None] = []
        n_tokens: dict[int, list[int]] = {}
        for i, req in enumerate(requests):
            try:
                req_rows, hint = self._plan_request(i, req)
            except Exception as e:  # noqa: BLE001 - a request that cannot be rendered fails alone
                responses[i] = Response(error=_error_text(e))
                continue
            n_tokens[i] = [0] * len(req.continuations)
            for r in req_rows:
                for t in r.targets:
                    n_tokens[i][t.choice] = len(t.tokens)
                rows.append(r)
                reuse_hint.append(hint)
        scores: dict[tuple[int, int], tuple[float, bool]] = {}
        failed: dict[int, str] = {}
        started = time.perf_counter()
        self._score_rows(rows, reuse_hint, scores, failed)
        elapsed = time.perf_counter() - started
        live = [i for i in range(len(requests)) if responses[i] is None]
        for i in live:
            req = requests[i]
            if i in failed:
                responses[i] = Response(error=failed[i])
                continue
            got = [scores.get((i, j), (0.0, True)) for j in range(len(req.continuations))]
            responses[i] = Response(
                logprobs=tuple(lp for lp, _ in got),
                is_greedy=tuple(g for _, g in got),
                n_tokens=tuple(n_tokens[i]),
                latency_s=elapsed / max(1, len(live)),
            )
        return [r if r is not None else Response(error="not scored") for r in responses]

    def _plan_request(self, index: int, req: Request) -> tuple[list[_Row], tuple[int, ...] | None]:
        if not req.continuations:
            return [], None
        text = self.render(req.prompt)
        pairs = self.encode_choices(text, req.continuations)
        ctx = pairs[0][0]
        if not self.fast_paths:
            return [self._row(index, j, c, k) for j, (c, k) in enumerate(pairs) if k], None
        hint = self._shared_prefix_hint(req, text)
        conts = [k for _, k in pairs]
        if all(len(k) == 1 for k in conts) and len(ctx) < self.max_length:
            row = _Row(list(ctx), [_Target(index, j, k) for j, k in enumerate(conts)])
            return [row], hint
        rows = [self._row(index, j, ctx, k) for j, k in enumerate(conts) if k]
        if len(rows) > 1 and hint is None and len(ctx) > MIN_PREFIX_REUSE:
            # several continuations of one context: compute the context once, extend it per choice
            hint = tuple(ctx[:-1])
        return rows, hint

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
        m = min(_lcp(hint, tokens), len(tokens) - keep)
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

    def _row(self, index: int, choice: int, ctx: list[int], cont: list[int]) -> _Row:
        tokens = (ctx + cont)[-(self.max_length + 1) :][:-1]
        return _Row(tokens, [_Target(index, choice, cont)])

    def _score_rows(
        self,
        rows: list[_Row],
        hints: list[tuple[int, ...] | None],
        scores: dict[tuple[int, int], tuple[float, bool]],
        failed: dict[int, str],
    ) -> None:
        # group rows by the prefix whose KV cache they reuse (() = none)
        groups: dict[tuple[int, ...], list[_Row]] = defaultdict(list)
        stats = self.last_stats
        stats.rows = len(rows)
        for row, hint in zip(rows, hints):
            key = self._reuse_key(hint, row.tokens, row.keep)
            row.reuse = len(key)
            groups[key].append(row)
        for key, group in groups.items():
            try:
                base = self._prefix_cache(key) if key else None
            except Exception as e:  # noqa: BLE001 - answered as errors, never lost
                for row in group:
                    for t in row.targets:
                        failed[t.request] = _error_text(e)
                continue
            if key:
                stats.rows_with_reuse += len(group)
                stats.prefix_tokens_reused += len(key) * len(group)
            group.sort(key=lambda r: len(r.tokens) - r.reuse, reverse=True)
            for b in range(0, len(group), self.batch_size):
                self._score_batch(group[b : b + self.batch_size], key, base, scores, failed)

    def _score_batch(
        self,
        batch: list[_Row],
        key: tuple[int, ...],
        base: Any,
        scores: dict[tuple[int, int], tuple[float, bool]],
        failed: dict[int, str],
    ) -> None:
        torch = _torch()
        try:
            suffixes = [r.tokens[len(key) :] for r in batch]
            keep = max(r.keep for r in batch)
            with torch.inference_mode():
                logits, hidden = self._forward(suffixes, len(key), base, keep)
                if self.dola is None:
                    logprobs = torch.log_softmax(logits.float(), dim=-1)
                else:  # row by row: the early exits of a whole batch would be [layers, rows, keep, vocab]
                    logprobs = torch.cat(
                        [
                            self.dola.token_loglikelihoods(logits[i : i + 1], [h[i : i + 1] for h in hidden])
                            for i in range(len(batch))
                        ]
                    )
            self.last_stats.forward_passes += 1
        except Exception as e:  # noqa: BLE001 - isolated below, then answered as errors
            if len(batch) > 1:  # isolate the row that fails
                for r in batch:
                    self._score_batch([r], key, base, scores, failed)
                return
            for t in batch[0].targets:
                failed[t.request] = _error_text(e)
            return
        for i, row in enumerate(batch):
            for t in row.targets:
                n = len(t.tokens)
                lp = logprobs[i, keep - n :, :]
                ids = torch.tensor(t.tokens, device=lp.device)
                total = lp.gather(-1, ids[:, None]).sum().item()
                greedy = bool((lp.argmax(dim=-1) == ids).all().item())
                scores[(t.request, t.choice)] = (float(total), greedy)

    def _forward(self, suffixes: list[list[int]], past: int, base: Any, keep: int) -> tuple[Any, Any]:
        """Logits of the last `keep` positions of each left-padded suffix, after `past` cached tokens,
        and (for DoLa only, else None) every layer's hidden states."""
        torch = _torch()
        width = max(len(s) for s in suffixes)
        n = len(suffixes)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, past + width), dtype=torch.long)
        mask[:, :past] = 1
        for i, s in enumerate(suffixes):
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, past + width - len(s) :] = 1
        kwargs: dict[str, Any] = {"use_cache": base is not None}
        if any(len(s) < width for s in suffixes):
            kwargs["attention_mask"] = mask.to(self.device)
            kwargs["position_ids"] = (mask[:, past:].cumsum(-1) - 1).clamp(min=0).add(past).to(self.device)
        if base is not None:
            kwargs[self._cache_kw] = _expand_cache(base, n)
        if self._has_logits_to_keep:
            kwargs["logits_to_keep"] = keep
        if self.dola is not None:
            kwargs["output_hidden_states"] = True
        out = self.model(ids.to(self.device), **kwargs)
        return out.logits[:, -keep:, :], out.hidden_states if self.dola is not None else None

    def _prefix_cache(self, key: tuple[int, ...]) -> Any:
        """The KV cache of `key`'s tokens, computed once (extending the longest cached prefix)."""
        torch = _torch()
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
            cache = _expand_cache(cache, 1)
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

    # ---- hidden states ----------------------------------------------------------------------
    def hidden_states(self, texts: Sequence[str], ends: Sequence[int] | None = None) -> Any:
        """Every layer's hidden state at one token of each plain text, as a float32 numpy array
        [layers + 1, len(texts), hidden size] (0: the embeddings; the last: after the final norm).

        The token is the last one starting before character `ends[i]` (default: the text's last
        token), e.g. an entity's last token when a prompt goes on after it."""
        import numpy as np

        torch = _torch()
        positions: list[tuple[list[int], int]] = []
        for i, text in enumerate(texts):
            end = len(text) if ends is None else ends[i]
            add = not (self._bos_text and text.startswith(self._bos_text))
            if self.tokenizer.is_fast:
                enc = self.tokenizer(text, add_special_tokens=add, return_offsets_mapping=True)
                ids = list(enc["input_ids"])
                spans = enc["offset_mapping"]
                hits = [j for j, (a, b) in enumerate(spans) if b > a and a < end]
                pos = hits[-1] if hits else len(ids) - 1
            else:
                ids = self.encode(text)
                pos = len(self.encode(text[:end])) - 1
            ids = ids[: self.max_length]
            positions.append((ids, min(pos, len(ids) - 1)))
        out: list[Any] = []
        with torch.inference_mode():
            for b in range(0, len(positions), self.batch_size):
                batch = positions[b : b + self.batch_size]
                width = max(len(ids) for ids, _ in batch)
                # right padding: a causal model's states before the padding do not see it
                batch_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, (toks, _) in enumerate(batch):
                    batch_ids[row, : len(toks)] = torch.tensor(toks, dtype=torch.long)
                    mask[row, : len(toks)] = 1
                kwargs: dict[str, Any] = {"output_hidden_states": True, "use_cache": False}
                if self._has_logits_to_keep:
                    kwargs["logits_to_keep"] = 1
                result = self.model(batch_ids.to(self.device), attention_mask=mask.to(self.device), **kwargs)
                rows = torch.arange(len(batch))
                at = torch.tensor([pos for _, pos in batch])
                out.append(torch.stack([h[rows, at].float().cpu() for h in result.hidden_states]))
        if not out:
            config = self.model.config.get_text_config()
            return np.zeros((config.num_hidden_layers + 1, 0, config.hidden_size), dtype=np.float32)
        return np.concatenate([o.numpy() for o in out], axis=1)

    # ---- generation -------------------------------------------------------------------------
    def generate(self, requests: Sequence[Request]) -> list[Response]:
        """Complete each prompt: greedy or seeded sampling, stop strings, continuous batching.

        Requests whose prompt starts with their `shared_prefix` (few-shot exemplars) start from the
        prefix's KV cache, computed once, as in `loglikelihood`; the tokens fed are always those of
        the whole prompt. Prompts go longest first; with `fast_paths` (and a model whose cache
        rows can be joined: not DoLa, no sliding-window layers) a finished row's slot is taken by
        the next prompt at once, else prompts run in static batches until their longest row ends."""
        responses: list[Response | None] = [None] * len(requests)
        for item in self._answer_generate(requests):
            if item is not None:
                responses[item[0]] = item[1]
        return [r if r is not None else Response(error="not generated") for r in responses]

    def stream(self, requests: Sequence[Request]) -> Iterator[tuple[int, Response] | None]:
        """The engine's streaming protocol: `(index, response)` as each request is answered, and
        None after every decoding step in which none was. Log-likelihood requests go in batches of
        `batch_size` (formed as the engine forms them for `loglikelihood`), then generation requests all in one
        continuous batch, so the batch stays full until the last prompt; the engine saves answers
        as they come and stops between two steps on Ctrl-C."""
        # batches formed in the engine's batch order (shared prefix together, longest first)
        scored = sorted((i for i, r in enumerate(requests) if r.kind != "generate"), key=lambda i: batch_order(requests[i]))
        for b in range(0, len(scored), self.batch_size):
            part = scored[b : b + self.batch_size]
            yield from zip(part, self.loglikelihood([requests[i] for i in part]))
        generated = [i for i, r in enumerate(requests) if r.kind == "generate"]
        for item in self._answer_generate([requests[i] for i in generated]):
            yield None if item is None else (generated[item[0]], item[1])

    def _answer_generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, Response] | None]:
        """Every request's `(index, response)` as it is answered (None after a step that answered
        none): requests are grouped by the shared prefix they reuse, longest prompt first."""
        self.last_stats = ScoringStats()
        groups: dict[tuple[int, ...], list[tuple[int, list[int]]]] = defaultdict(list)
        for i, req in enumerate(requests):
            try:
                text = self.render(req.prompt)
                tokens = self.encode(text)
                budget = max(1, self.max_length - max(1, req.params.max_tokens))
                tokens = tokens[-budget:] or [self.prefix_token_id]
                hint = self._shared_prefix_hint(req, text) if self.fast_paths else None
                key = self._reuse_key(hint, tokens, 1)
            except Exception as e:  # noqa: BLE001 - a request that cannot be rendered fails alone
                yield i, Response(error=_error_text(e))
                continue
            groups[key].append((i, tokens))
        self.last_stats.rows = sum(len(g) for g in groups.values())
        continuous = self.fast_paths and self.dola is None and self._joinable_cache
        for key, items in groups.items():
            try:
                base = self._prefix_cache(key) if key else None
            except Exception as e:  # noqa: BLE001 - answered as errors, never lost
                for i, _ in items:
                    yield i, Response(error=_error_text(e))
                continue
            if key:
                self.last_stats.rows_with_reuse += len(items)
                self.last_stats.prefix_tokens_reused += len(key) * len(items)
            items.sort(key=lambda it: len(it[1]), reverse=True)
            if continuous:
                yield from self._generate_continuous(items, requests, len(key), base)
                continue
            for b in range(0, len(items), self.batch_size):
                batch = items[b : b + self.batch_size]
                yield from zip((i for i, _ in batch), self._generate_isolated(batch, requests, len(key), base))

    def _generate_isolated(
        self, batch: list[tuple[int, list[int]]], requests: Sequence[Request], past: int, base: Any
    ) -> list[Response]:
        try:
            return self._generate_batch(batch, requests, past, base)
        except Exception as e:  # noqa: BLE001 - isolated below, then answered as errors
            if len(batch) == 1:
                return [Response(error=_error_text(e))]
            return [r for item in batch for r in self._generate_isolated([item], requests, past, base)]

    def _generate_batch(
        self, batch: list[tuple[int, list[int]]], requests: Sequence[Request], past: int, base: Any
    ) -> list[Response]:
        """One static batch: it runs until its last row ends (finished rows leave the cache)."""
        torch = _torch()
        with torch.inference_mode():
            rows, cache, mask, pos, logits, out = self._prefill(batch, requests, past, base)
            active = list(rows)  # rows still generating, in the order of the cache's batch dim
            while True:
                started = time.perf_counter()
                if self.dola is not None:
                    histories = [row.tokens + row.out for row in active]
                    logits = self.dola.next_token_scores(out, histories).cpu()
                still = [slot for slot, row in enumerate(active) if self._advance(row, logits[slot])]
                if not still:
                    break
                if len(still) < len(active):
                    index = torch.tensor(still, dtype=torch.long)
                    cache.batch_select_indices(index.to(self.device))
                    mask, pos = mask[index], pos[index]
                active = [active[s] for s in still]
                logits, out, mask, pos = self._decode_step(active, cache, mask, pos)
                for row in active:
                    row.seconds += (time.perf_counter() - started) / len(active)
        return [row.response(self.tokenizer) for row in rows]

    def _generate_continuous(
        self,
        items: list[tuple[int, list[int]]],
        requests: Sequence[Request],
        past: int,
        base: Any,
    ) -> Iterator[tuple[int, Response] | None]:
        """Continuous batching: up to `batch_size` rows decode together, and as rows finish, the next
        prompts of the queue are prefilled and joined to the running batch, so it stays full until
        the queue is empty. Rows not finished when something failed are answered by the static
        batches (which isolate the failing request). Yields as `_answer_generate`."""
        torch = _torch()
        answered: set[int] = set()
        queue = deque(items)
        active: list[_GenRow] = []
        cache: Any = None
        mask = pos = logits = None
        refill_at = max(1, self.batch_size // REFILL_FRACTION)
        try:
            while active or queue:
                done: list[_GenRow] = []
                # inference mode only between two yields: it is thread-local and must not hold
                # while the caller (the engine saving answers) runs
                with torch.inference_mode():
                    free = self.batch_size - len(active)
                    if queue and (not active or free >= min(refill_at, len(queue))):
                        new = [queue.popleft() for _ in range(min(free, len(queue)))]
                        rows, new_cache, new_mask, new_pos, new_logits, _ = self._prefill(new, requests, past, base)
                        cache, mask, pos = _join_rows(cache, mask, pos, new_cache, new_mask, new_pos)
                        logits = new_logits if logits is None else torch.cat([logits, new_logits])
                        active += rows
                    started = time.perf_counter()
                    # a batch is active only after a prefill, which set logits, mask and pos
                    assert logits is not None and mask is not None and pos is not None
                    still = [slot for slot, row in enumerate(active) if self._advance(row, logits[slot])]
                    kept = set(still)
                    done = [row for slot, row in enumerate(active) if slot not in kept]
                    if len(still) < len(active):
                        active = [active[s] for s in still]
                        if active:
                            index = torch.tensor(still, dtype=torch.long)
                            cache.batch_select_indices(index.to(self.device))
                            mask, pos = mask[index], pos[index]
                            # leading columns that only finished rows attended to: drop them
                            first = int(mask.any(0).nonzero()[0, 0])
                            if first:
                                _crop_left(cache, first)
                                mask = mask[:, first:]
                        else:
                            cache = mask = pos = logits = None
                    if active:
                        logits, _, mask, pos = self._decode_step(active, cache, mask, pos)
                        for row in active:
                            row.seconds += (time.perf_counter() - started) / len(active)
                for row in done:
                    answered.add(row.index)
                    yield row.index, row.response(self.tokenizer)
                if not done:
                    yield None
        except Exception:  # noqa: BLE001 - the static path answers what is left, isolating failures
            left = [item for item in items if item[0] not in answered]
            for b in range(0, len(left), self.batch_size):
                batch = left[b : b + self.batch_size]
                yield from zip((i for i, _ in batch), self._generate_isolated(batch, requests, past, base))

    def _prefill(
        self, items: list[tuple[int, list[int]]], requests: Sequence[Request], past: int, base: Any
    ) -> tuple[list[_GenRow], Any, Any, Any, Any, Any]:
        """Run prompts whose first `past` tokens are in the cache `base` (None when past is 0), the
        rest left-padded after them: the new rows, their cache, attention mask, next positions,
        the logits of their first token and the model's output."""
        torch = _torch()
        from transformers import DynamicCache

        started = time.perf_counter()
        n = len(items)
        width = max(len(t) - past for _, t in items)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, past + width), dtype=torch.long)
        mask[:, :past] = 1
        for row, (_, toks) in enumerate(items):
            suffix = toks[past:]
            ids[row, width - len(suffix) :] = torch.tensor(suffix, dtype=torch.long)
            mask[row, past + width - len(suffix) :] = 1
        positions = (mask[:, past:].cumsum(-1) - 1).clamp(min=0).add(past)
        cache = _expand_cache(base, n) if base is not None else DynamicCache(config=self.model.config)
        logits, out = self._forward_step(ids, cache, mask, positions)
        seconds = (time.perf_counter() - started) / n
        rows = [_GenRow.start(i, toks, requests[i], _StopWatch(self.tokenizer, requests[i].params.stop), seconds)
                for i, toks in items]
        return rows, cache, mask, positions[:, -1:] + 1, logits, out

    def _decode_step(self, active: list[_GenRow], cache: Any, mask: Any, pos: Any) -> tuple[Any, Any, Any, Any]:
        """Feed every active row its last token: (next logits, output, mask, next positions)."""
        torch = _torch()
        ids = torch.tensor([[row.out[-1]] for row in active], dtype=torch.long)
        mask = torch.cat([mask, torch.ones((len(active), 1), dtype=torch.long)], dim=1)
        logits, out = self._forward_step(ids, cache, mask, pos)
        return logits, out, mask, pos[:, -1:] + 1

    def _forward_step(self, ids: Any, cache: Any, mask: Any, positions: Any) -> tuple[Any, Any]:
        kwargs: dict[str, Any] = {"use_cache": True, self._cache_kw: cache}
        if self._has_logits_to_keep:
            kwargs["logits_to_keep"] = 1
        if self.dola is not None:
            kwargs["output_hidden_states"] = True
        out = self.model(
            ids.to(self.device), attention_mask=mask.to(self.device), position_ids=positions.to(self.device), **kwargs
        )
        return out.logits[:, -1, :].float().cpu(), out

    def _advance(self, row: _GenRow, logits: Any) -> bool:
        """Pick the row's next token and record it; False once the row has finished."""
        tok = _pick(logits, row.params, row.generator)
        if tok in self.eos_ids:
            row.reason = "stop"
            return False
        row.out.append(tok)
        stopped = row.stops.check(row.out)
        if stopped is not None:
            row.text, row.reason = stopped, "stop"
        elif len(row.out) >= row.params.max_tokens:
            row.reason = "length"
        return row.reason is None


@dataclass
class _GenRow:
    """One request being generated: its prompt tokens, what it produced so far, why it ended, and
    its share of the model's time (each step's time split among the rows in it)."""

    index: int
    tokens: list[int]
    params: GenerationParams
    generator: Any
    stops: _StopWatch
    seconds: float
    out: list[int] = field(default_factory=list)
    text: str | None = None
    reason: str | None = None

    @classmethod
    def start(cls, index: int, tokens: list[int], req: Request, stops: _StopWatch, seconds: float) -> _GenRow:
        return cls(index, tokens, req.params, _generator(req), stops, seconds)

    def response(self, tokenizer: Any) -> Response:
        text = self.text if self.text is not None else str(tokenizer.decode(self.out, skip_special_tokens=True))
        return Response(
            text=text,
            prompt_tokens=len(self.tokens),
            completion_tokens=len(self.out),
            latency_s=self.seconds,
            finish_reason=self.reason or "length",
        )


def _join_rows(cache: Any, mask: Any, pos: Any, new_cache: Any, new_mask: Any, new_pos: Any) -> tuple[Any, Any, Any]:
    """The running batch's cache, mask and positions with new rows appended: the shorter side is
    padded on the left with masked columns (keys hold their rotary positions already)."""
    torch = _torch()
    if cache is None:
        return new_cache, new_mask, new_pos
    width = max(mask.shape[1], new_mask.shape[1])
    for old, new in zip(cache.layers, new_cache.layers):
        for name in ("keys", "values"):
            a, b = getattr(old, name), getattr(new, name)
            pad_a, pad_b = width - a.shape[-2], width - b.shape[-2]
            a = torch.nn.functional.pad(a, (0, 0, pad_a, 0)) if pad_a else a
            b = torch.nn.functional.pad(b, (0, 0, pad_b, 0)) if pad_b else b
            setattr(old, name, torch.cat([a, b]))
    mask = torch.cat(
        [torch.nn.functional.pad(m, (width - m.shape[1], 0)) for m in (mask, new_mask)]
    )
    return cache, mask, torch.cat([pos, new_pos])


def _crop_left(cache: Any, first: int) -> None:
    """Drop the first `first` columns of every layer (no remaining row attends to them)."""
    for layer in cache.layers:
        layer.keys = layer.keys[:, :, first:, :]
        layer.values = layer.values[:, :, first:, :]


class _StopWatch:
    """Finds the first stop string in a row's decoded text as tokens arrive, decoding only a window
    of the newest tokens each step instead of the whole text.

    A stop string that appears when a token is added ends in the characters that token added (or
    changed: a multi-byte character completed, a space cleaned up), so it lies within the text's
    last `longest + SLACK` characters; the window is decoded from enough tokens to cover them, and
    the whole text is decoded only when the window holds a stop string (or is too short to tell),
    so the text cut there is exactly that of decoding everything at every step."""

    SLACK = 8  # characters a window's first tokens may decode differently from the whole text

    def __init__(self, tokenizer: Any, stop: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.longest = max((len(s) for s in self.stop), default=0)
        self.window = self.longest + 2 * self.SLACK  # tokens: most decode to one character or more

    def check(self, tokens: list[int]) -> str | None:
        """The text before the first stop string when the text of `tokens` holds one, else None."""
        if not self.stop:
            return None
        if len(tokens) > self.window:
            tail = str(self.tokenizer.decode(tokens[-self.window :], skip_special_tokens=True))
            if len(tail) >= self.longest + self.SLACK and not any(s in tail for s in self.stop):
                return None
        text = str(self.tokenizer.decode(tokens, skip_special_tokens=True))
        cut = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        return text[:cut] if cut >= 0 else None


def _pick(logits: Any, params: GenerationParams, generator: Any) -> int:
    """The next token: argmax when greedy, else a draw from the temperature / top-p distribution."""
    torch = _torch()
    if params.greedy:
        return int(logits.argmax().item())
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        # keep the smallest set of tokens whose mass reaches top_p (always at least the top one)
        drop = sorted_p.cumsum(-1) - sorted_p >= params.top_p
        sorted_p[drop] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_p)
    return int(torch.multinomial(probs, 1, generator=generator).item())


def _generator(req: Request) -> Any:
    """A random generator per request, so a draw depends on the request alone, not on its batch.
    The seed mixes `params.seed` (or the prompt when there is none) with `repeat`, so the n draws of
    pass@k differ from each other but every re-run repeats them."""
    seed = sampling_seed(req)
    if seed is None:
        return None
    g = _torch().Generator()
    g.manual_seed(seed)
    return g


def _expand_cache(base: Any, n: int) -> Any:
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


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    for value in (getattr(gen, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return ids


def _resolve_source(spec: str, gguf_file: str | None) -> tuple[str, str | None]:
    """(folder or hub id, GGUF file name) from a model spec."""
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"GGUF file not found: {path}", "check the path; GGUF files end in .gguf")
        return str(path.parent), path.name
    if path.is_dir():
        if gguf_file is None and not (path / "config.json").exists():
            ggufs = sorted(p.name for p in path.glob("*.gguf"))
            if len(ggufs) == 1:
                return str(path), ggufs[0]
            if not ggufs:
                raise ModelError(
                    f"{path} holds no model: no config.json and no .gguf file",
                    "point at a folder saved with save_pretrained(), or at a .gguf file",
                )
            raise ModelError(f"{path} holds several GGUF files", f"name one: {path / ggufs[0]}")
        return str(path), gguf_file
    if spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or path.exists():
        raise ModelError(
            f"model path not found: {path}", "give a model folder, a .gguf file or a hub id org/name"
        )
    return spec, gguf_file


def _load_hint(spec: str) -> str:
    if Path(spec).expanduser().exists():
        return "the folder or file exists but transformers cannot read it as a causal LM"
    return (
        f"offline? download it where you have internet (huggingface-cli download {spec}) and pass the "
        "local folder, or use a bundled model (capeval models)"
    )


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


@register_backend("hf")
def load_hf(spec: str, **options: Any) -> HFModel:
    """`hf:<folder | hub id | file.gguf>`: a transformers causal LM."""
    check_options("hf", options, option_names(HFModel))
    return HFModel(spec, **options)
