"""Generation: greedy or seeded sampling, stop strings, continuous batching from shared-prefix caches."""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from capeval.models.base import batch_order, sampling_seed
from capeval.models.hf.kv import expand_cache
from capeval.models.hf.loading import ScoringStats, error_text, torch_module
from capeval.models.hf.lookup import PromptLookup
from capeval.models.hf.scoring import LoglikelihoodScoring
from capeval.models.hf.stops import StopWatch
from capeval.types import GenerationParams, Request, Response

log = logging.getLogger("capeval.models.hf")

# Continuous batching refills the batch once this share of its slots (1/n) is free: each refill is
# one more forward pass, so rows are admitted a few at a time.
REFILL_FRACTION = 4
# At most this many cache columns are allocated ahead of need for continuous batching.
MAX_ROOM = 512
# Speculative greedy decoding (prompt lookup, lookup.py): a step feeds each row its last token and
# up to MAX_DRAFT guessed ones, as long as the step's rows x fed tokens stay within DRAFT_BUDGET
# times the batch size. On CPU a step's cost is mostly reading the weights once, nearly the same
# for 2 rows as for 16, so the guesses fill the room that rows which finished left in the batch.
MAX_DRAFT = 8
DRAFT_BUDGET = 1.5


class Generation(LoglikelihoodScoring):
    """`generate`, and `stream` (log-likelihood requests in batches, then generation requests)."""

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        """Complete each prompt: greedy or seeded sampling, stop strings, continuous batching.

        Requests whose prompt starts with their `shared_prefix` (few-shot exemplars) start from the
        prefix's KV cache, computed once, as in `loglikelihood`; the tokens fed are always those of
        the whole prompt. Prompts go longest first; with `fast_paths` (and a model whose cache
        rows can be joined: not DoLa, no sliding-window layers) a finished row's slot is taken by
        the next prompt at once, and greedy rows feed guessed tokens (prompt lookup) where the
        batch has room, keeping those that are their greedy picks (on CUDA the rows decode in
        fixed-shape slots instead, each step one CUDA graph replay: `_generate_slots`); else
        prompts run in static batches until their longest row ends."""
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
                yield i, Response(error=error_text(e))
                continue
            groups[key].append((i, tokens))
        self.last_stats.rows = sum(len(g) for g in groups.values())
        continuous = self.fast_paths and self.dola is None and self._joinable_cache
        for key, items in groups.items():
            try:
                base = self.prefix_cache(key) if key else None
            except Exception as e:  # noqa: BLE001 - answered as errors, never lost
                for i, _ in items:
                    yield i, Response(error=error_text(e))
                continue
            if key:
                self.last_stats.rows_with_reuse += len(items)
                self.last_stats.prefix_tokens_reused += len(key) * len(items)
            items.sort(key=lambda it: len(it[1]), reverse=True)
            if continuous and self._slot_decoding():
                yield from self._generate_slots(items, requests, len(key), base)
                continue
            if continuous:
                yield from self._generate_continuous(items, requests, len(key), base)
                continue
            for batch in self._static_batches(items, self.same_length_after_prefix(len(key))):
                yield from zip((i for i, _ in batch), self._generate_isolated(batch, requests, len(key), base))

    def _static_batches(
        self, items: list[tuple[int, list[int]]], same_length: bool
    ) -> Iterator[list[tuple[int, list[int]]]]:
        """Consecutive items, at most `batch_size` a batch; with `same_length`, of one prompt length."""
        batch: list[tuple[int, list[int]]] = []
        for item in items:
            if batch and (len(batch) >= self.batch_size or (same_length and len(item[1]) != len(batch[0][1]))):
                yield batch
                batch = []
            batch.append(item)
        if batch:
            yield batch

    def _generate_isolated(
        self, batch: list[tuple[int, list[int]]], requests: Sequence[Request], past: int, base: Any
    ) -> list[Response]:
        try:
            return self._generate_batch(batch, requests, past, base)
        except Exception as e:  # noqa: BLE001 - isolated below, then answered as errors
            if len(batch) == 1:
                return [Response(error=error_text(e))]
            return [r for item in batch for r in self._generate_isolated([item], requests, past, base)]

    def _generate_batch(
        self, batch: list[tuple[int, list[int]]], requests: Sequence[Request], past: int, base: Any
    ) -> list[Response]:
        """One static batch: it runs until its last row ends (finished rows leave the cache)."""
        torch = torch_module()
        with torch.inference_mode():
            rows, cache, mask, logits, out = self._prefill(batch, requests, past, base)
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
                    mask = mask[index]
                active = [active[s] for s in still]
                pending, mask, out = self._verify_step(active, cache, mask, [[] for _ in active])
                logits = [row_logits[0] for row_logits in pending]
                _share_time(active, started)
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
        torch = torch_module()
        answered: set[int] = set()
        queue = deque(items)
        active: list[_GenRow] = []
        # per active row: the logits to take its next tokens from ([n, vocab]: after its last
        # token, then after each token of its draft), and the draft fed in the last step
        pending: list[Any] = []
        drafts: list[list[int]] = []
        cache: Any = None
        mask: Any = None
        from capeval.models.hf.decode_cache import crop_left, join_rows

        refill_at = max(1, self.batch_size // REFILL_FRACTION)
        # cache columns allocated ahead (the cache grows past them when needed)
        room = min(MAX_ROOM, max(requests[i].params.max_tokens for i, _ in items))
        # the prefix stays in its stored cache, read once per step by the attention (prefix_attention.py)
        shared = None
        if base is not None and self._shared_prefix_attention:
            from capeval.models.hf.prefix_attention import SharedPrefix

            shared = SharedPrefix(base)
        try:
            while active or queue:
                done: list[_GenRow] = []
                # inference mode only between two yields: it is thread-local and must not hold
                # while the caller (the engine saving answers) runs
                with torch.inference_mode():
                    free = self.batch_size - len(active)
                    if queue and (not active or free >= min(refill_at, len(queue))):
                        new = [queue.popleft() for _ in range(min(free, len(queue)))]
                        rows, new_cache, new_mask, new_logits, _ = self._prefill(new, requests, past, base, room, shared)
                        cache, mask = join_rows(cache, mask, new_cache, new_mask, room)
                        pending += [new_logits[i : i + 1] for i in range(len(rows))]
                        drafts += [[] for _ in rows]
                        active += rows
                    started = time.perf_counter()
                    # a batch is active only after a prefill, which set the mask
                    assert mask is not None
                    still = []
                    for slot, row in enumerate(active):
                        going, rejected = self._take(row, pending[slot], drafts[slot])
                        if going:
                            still.append(slot)
                        if rejected:  # the rejected guesses' cache columns: masked from now on
                            mask[slot, mask.shape[1] - rejected :] = 0
                    kept = set(still)
                    done = [row for slot, row in enumerate(active) if slot not in kept]
                    if len(still) < len(active):
                        active = [active[s] for s in still]
                        if active:
                            index = torch.tensor(still, dtype=torch.long)
                            cache.batch_select_indices(index.to(self.device))
                            mask = mask[index]
                            # leading columns that only finished rows attended to: drop them
                            first = int(mask.any(0).nonzero()[0, 0])
                            if first:
                                crop_left(cache, first)
                                mask = mask[:, first:]
                        else:
                            cache = mask = None
                            pending, drafts = [], []
                    if active:
                        drafts = self._drafts(active)
                        pending, mask, _ = self._verify_step(active, cache, mask, drafts, shared)
                        _share_time(active, started)
                for row in done:
                    answered.add(row.index)
                    yield row.index, row.response(self.tokenizer)
                if not done:
                    yield None
        except Exception:  # noqa: BLE001 - the static path answers what is left, isolating failures
            yield from self._answer_rest_static(items, answered, requests, past, base)

    def _answer_rest_static(
        self,
        items: list[tuple[int, list[int]]],
        answered: set[int],
        requests: Sequence[Request],
        past: int,
        base: Any,
    ) -> Iterator[tuple[int, Response]]:
        """After continuous batching failed part-way: the items not yet answered, in static
        batches (which isolate a failing request)."""
        self.last_stats.continuous_fallbacks += 1
        left = [item for item in items if item[0] not in answered]
        for b in range(0, len(left), self.batch_size):
            batch = left[b : b + self.batch_size]
            yield from zip((i for i, _ in batch), self._generate_isolated(batch, requests, past, base))

    def _slot_decoding(self) -> bool:
        """Whether generation decodes in fixed-shape slots (graph_decode.py): by default on CUDA,
        for models whose attention takes a boolean mask over all columns (sdpa)."""
        if self.cuda_graphs is False or (self.cuda_graphs is None and not str(self.device).startswith("cuda")):
            return False
        from capeval.models.hf import prefix_attention

        return getattr(self.model.config, "_attn_implementation", None) in ("sdpa", prefix_attention.NAME)

    def _slot_batch(self, rows: int, columns: int) -> Any:
        """Slots for `rows` rows of up to `columns` columns each; the last ones are reused when
        their shape fits (recording a CUDA graph costs a few steps' time)."""
        from capeval.models.hf.graph_decode import SlotBatch, slot_capacity

        capacity = slot_capacity(columns)
        kept = self._slots
        if kept is not None and (kept.rows, kept.capacity) == (rows, capacity):
            kept.free(range(rows))
            return kept
        self._slots = None  # the old buffers go before the new ones are allocated
        graph = str(self.device).startswith("cuda")
        self._slots = SlotBatch(self.model, self._cache_kw, self._has_logits_to_keep, rows, capacity, self.pad_id,
                                self.device, graph)
        return self._slots

    def _generate_slots(
        self,
        items: list[tuple[int, list[int]]],
        requests: Sequence[Request],
        past: int,
        base: Any,
    ) -> Iterator[tuple[int, Response] | None]:
        """Continuous batching in fixed-shape slots (graph_decode.py), each decoding step one CUDA
        graph replay on a GPU: prompts are prefilled as in `_generate_continuous` and copied into
        free slots; greedy picks are made on the device. No guessed tokens (a graph has one shape).
        Rows not finished when something failed are answered by the static batches. Yields as
        `_answer_generate`."""
        torch = torch_module()
        from capeval.models.hf.graph_decode import GraphCaptureError

        answered: set[int] = set()
        queue = deque(items)
        n = min(self.batch_size, len(items))
        columns = max(len(t) for _, t in items) + max(requests[i].params.max_tokens for i, _ in items)
        rows: list[_GenRow | None] = [None] * n
        # per slot, what its row's next token comes from: the prefill's logits (CPU), the step's
        # scores (sampled rows, CPU) or the step's greedy pick
        scores: dict[int, Any] = {}
        picks: list[int] = []
        refill_at = max(1, n // REFILL_FRACTION)
        try:
            slots = self._slot_batch(n, columns)
            replays = slots.replays
            while True:
                done: list[_GenRow] = []
                with torch.inference_mode():
                    free = [s for s, row in enumerate(rows) if row is None]
                    if queue and (len(free) == n or len(free) >= min(refill_at, len(queue))):
                        take = free[: len(queue)]
                        new = [queue.popleft() for _ in take]
                        new_rows, cache, mask, logits, _ = self._prefill(new, requests, past, base)
                        slots.fill(take, cache, mask, [len(toks) for _, toks in new])
                        del cache
                        for j, s in enumerate(take):
                            rows[s], scores[s] = new_rows[j], logits[j]
                    started = time.perf_counter()
                    tokens = [self.pad_id] * n
                    for s, row in enumerate(rows):
                        if row is None:
                            continue
                        going = self._advance(row, scores.pop(s)) if s in scores else self._record(row, picks[s])
                        if going:
                            tokens[s] = row.out[-1]
                        else:
                            done.append(row)
                            rows[s] = None
                    if done:
                        slots.free([s for s in range(n) if rows[s] is None])
                    live = {s: row for s, row in enumerate(rows) if row is not None}
                    if live:
                        slots.step(tokens)
                        picks = slots.picks.tolist()
                        sampled = [s for s, row in live.items() if not row.params.greedy]
                        if sampled:
                            scores.update(zip(sampled, slots.logits[sampled].float().cpu()))
                        _share_time(live.values(), started)
                for row in done:
                    answered.add(row.index)
                    yield row.index, row.response(self.tokenizer)
                if not live and not queue:
                    break
                if not done:
                    yield None
            self.last_stats.graph_replays += slots.replays - replays
        except GraphCaptureError as e:
            # recording happens at the first prompts' join, before any answer: continuous
            # batching without graphs answers them, and this model stops trying
            log.warning("decoding without CUDA graphs: the model's step could not be recorded (%s)", e)
            self.cuda_graphs = False
            self._slots = None
            yield from self._generate_continuous([it for it in items if it[0] not in answered], requests, past, base)
        except Exception:  # noqa: BLE001 - the static path answers what is left, isolating failures
            self._slots = None
            yield from self._answer_rest_static(items, answered, requests, past, base)

    def _prefill(
        self,
        items: list[tuple[int, list[int]]],
        requests: Sequence[Request],
        past: int,
        base: Any,
        room: int | None = None,
        shared: Any = None,
    ) -> tuple[list[_GenRow], Any, Any, Any, Any]:
        """Run prompts whose first `past` tokens are in the cache `base` (None when past is 0), the
        rest left-padded after them: the new rows, their cache, attention mask, the logits of their
        first token and the model's output. With `room`, the cache is one of
        GrowingLayers with that many columns free (continuous batching), else a DynamicCache.
        With `shared` (a SharedPrefix of `base`), the rows' cache and mask leave the prefix out:
        the attention reads it from there."""
        torch = torch_module()
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
        if room is not None:
            from capeval.models.hf.decode_cache import growing_cache

            cache = growing_cache(self.model.config, None if shared is not None else base, n, room + width)
        else:
            cache = expand_cache(base, n) if base is not None else DynamicCache(config=self.model.config)
        if shared is not None:
            mask = mask[:, past:]
        logits, out = self._forward_step(ids, cache, mask, positions, shared)
        logits = logits[:, -1]
        seconds = (time.perf_counter() - started) / n
        rows = [_GenRow.start(i, toks, requests[i], StopWatch(self.tokenizer, requests[i].params.stop), seconds)
                for i, toks in items]
        return rows, cache, mask, logits, out

    def _drafts(self, active: list[_GenRow]) -> list[list[int]]:
        """Each greedy row's guessed next tokens (prompt lookup), as many as the step has room for."""
        room = min(MAX_DRAFT, int(self.batch_size * DRAFT_BUDGET) // len(active) - 1)
        if room <= 0:
            return [[] for _ in active]
        drafts: list[list[int]] = []
        for row in active:
            if not row.params.greedy:
                drafts.append([])
                continue
            if row.lookup is None:
                row.lookup = PromptLookup(row.tokens)
            row.lookup.extend(row.out[len(row.lookup.seq) - len(row.tokens) :])
            drafts.append(row.lookup.draft(min(room, row.params.max_tokens - len(row.out) - 1)))
        self.last_stats.draft_tokens += sum(len(d) for d in drafts)
        return drafts

    def _verify_step(
        self, active: list[_GenRow], cache: Any, mask: Any, drafts: list[list[int]], shared: Any = None
    ) -> tuple[list[Any], Any, Any]:
        """Feed every active row its last token and its draft (left-padded to the longest draft;
        empty drafts: one decoding step): (per row the logits after each token it was fed, the
        mask with the new columns, the model's output)."""
        torch = torch_module()
        n, width = len(active), 1 + max(len(d) for d in drafts)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        new = torch.zeros((n, width), dtype=torch.long)
        positions = torch.empty((n, width), dtype=torch.long)
        for r, (row, draft) in enumerate(zip(active, drafts)):
            fed = [row.out[-1], *draft]
            start = width - len(fed)
            at = len(row.tokens) + len(row.out) - 1  # the position of the row's last token
            ids[r, start:] = torch.tensor(fed, dtype=torch.long)
            new[r, start:] = 1
            positions[r] = torch.arange(at - start, at - start + width).clamp(min=at)  # padding: masked
        mask = torch.cat([mask, new], dim=1)
        logits, out = self._forward_step(ids, cache, mask, positions, shared, keep=width)
        return [logits[r, width - 1 - len(d) :] for r, d in enumerate(drafts)], mask, out

    def _take(self, row: _GenRow, logits: Any, draft: list[int]) -> tuple[bool, int]:
        """Take the row's next tokens from `logits` (the predictions after its last token and after
        each token of `draft`): the first pick, then one more for each draft token that was the
        pick before it. (still generating, how many draft tokens were rejected: their columns in
        the cache hold keys of tokens the row does not have)."""
        for j, scores in enumerate(logits):
            going = self._advance(row, scores)
            if not going or (j < len(draft) and row.out[-1] != draft[j]):
                break
        else:
            j = len(draft)
        self.last_stats.accepted_draft_tokens += j
        return going, len(draft) - j if going else 0

    def _forward_step(
        self, ids: Any, cache: Any, mask: Any, positions: Any, shared: Any = None, keep: int = 1
    ) -> tuple[Any, Any]:
        """(the logits of the last `keep` positions [rows, keep, vocab] on CPU, the model's output)"""
        kwargs: dict[str, Any] = {"use_cache": True, self._cache_kw: cache}
        if shared is not None:
            kwargs["shared_prefix"] = shared
            reads = shared.reads
        if self._has_logits_to_keep:
            kwargs["logits_to_keep"] = keep
        if self.dola is not None:
            kwargs["output_hidden_states"] = True
        out = self.model(
            ids.to(self.device), attention_mask=mask.to(self.device), position_ids=positions.to(self.device), **kwargs
        )
        if shared is not None and shared.reads - reads != len(shared.cache.layers):
            # some layer attended without the prefix: its output is wrong; the caller's fallback
            # (static batches on the whole cache) answers instead, and this model stops using it
            self._shared_prefix_attention = False
            raise RuntimeError("the model's attention layers do not take the shared prefix")
        return out.logits[:, -keep:, :].float().cpu(), out

    def _advance(self, row: _GenRow, logits: Any) -> bool:
        """Pick the row's next token and record it; False once the row has finished."""
        return self._record(row, _pick(logits, row.params, row.generator))

    def _record(self, row: _GenRow, tok: int) -> bool:
        """Record the row's next token; False once the row has finished."""
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
    stops: StopWatch
    seconds: float
    lookup: PromptLookup | None = None  # a greedy row's drafts are looked up here (continuous batching)
    out: list[int] = field(default_factory=list)
    text: str | None = None
    reason: str | None = None

    @classmethod
    def start(cls, index: int, tokens: list[int], req: Request, stops: StopWatch, seconds: float) -> _GenRow:
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


def _share_time(rows: Collection[_GenRow], started: float) -> None:
    """Split the time since `started` (one decoding step) evenly among the rows in the step."""
    share = (time.perf_counter() - started) / len(rows)
    for row in rows:
        row.seconds += share


def _pick(logits: Any, params: GenerationParams, generator: Any) -> int:
    """The next token: argmax when greedy, else a draw from the temperature / top-p distribution."""
    torch = torch_module()
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
    g = torch_module().Generator()
    g.manual_seed(seed)
    return g
