"""Multiple-choice log-likelihood scoring: rows laid out as lm-eval lays them, with shared-prefix KV reuse."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from capeval.models.hf.kv import MIN_PREFIX_REUSE, PrefixKV, expand_cache
from capeval.models.hf.loading import ScoringStats, error_text, torch_module
from capeval.types import Request, Response

# Log-probabilities one scoring forward pass may hold (rows x scored positions x vocabulary, in
# float32: 256 MB). A document's bits per byte scores hundreds of positions per row, and over
# Gemma 3's 262,144-token vocabulary 16 such rows would take gigabytes; letters (one position)
# and short continuations stay in batches of `batch_size`.
MAX_BATCH_LOGITS = 1 << 26


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


class LoglikelihoodScoring(PrefixKV):
    """`loglikelihood` of the hf backend."""

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
                responses[i] = Response(error=error_text(e))
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
                base = self.prefix_cache(key) if key else None
            except Exception as e:  # noqa: BLE001 - answered as errors, never lost
                for row in group:
                    for t in row.targets:
                        failed[t.request] = error_text(e)
                continue
            if key:
                stats.rows_with_reuse += len(group)
                stats.prefix_tokens_reused += len(key) * len(group)
            group.sort(key=lambda r: len(r.tokens) - r.reuse, reverse=True)
            for batch in self._scoring_batches(group, self.same_length_after_prefix(len(key))):
                self._score_batch(batch, key, base, scores, failed)

    def _scoring_batches(self, rows: list[_Row], same_length: bool = False) -> Iterator[list[_Row]]:
        """Consecutive rows, at most `batch_size` and MAX_BATCH_LOGITS log-probabilities a batch
        (one row always goes, however long); with `same_length`, only rows of one length (no padding)."""
        vocab = int(self.model.get_output_embeddings().weight.shape[0])
        batch: list[_Row] = []
        keep = 0
        for row in rows:
            widest = max(keep, row.keep)
            if batch and (
                len(batch) >= self.batch_size
                or (len(batch) + 1) * widest * vocab > MAX_BATCH_LOGITS
                or (same_length and len(row.tokens) - row.reuse != len(batch[0].tokens) - batch[0].reuse)
            ):
                yield batch
                batch, widest = [], row.keep
            batch.append(row)
            keep = widest
        if batch:
            yield batch

    def _score_batch(
        self,
        batch: list[_Row],
        key: tuple[int, ...],
        base: Any,
        scores: dict[tuple[int, int], tuple[float, bool]],
        failed: dict[int, str],
    ) -> None:
        torch = torch_module()
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
                failed[t.request] = error_text(e)
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
        torch = torch_module()
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
            kwargs[self._cache_kw] = expand_cache(base, n)
        if self._has_logits_to_keep:
            kwargs["logits_to_keep"] = keep
        if self.dola is not None:
            kwargs["output_hidden_states"] = True
        out = self.model(ids.to(self.device), **kwargs)
        return out.logits[:, -keep:, :], out.hidden_states if self.dola is not None else None
