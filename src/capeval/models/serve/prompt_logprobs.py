"""Prompt log-probabilities (`echo` + `logprobs`): the hf backend's tokens in one pass, or any Model piece by piece."""

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from capeval.errors import CapevalError
from capeval.models.base import Model
from capeval.models.serve.protocol import BadRequest
from capeval.types import Request

# ---- prompt log-probabilities ----------------------------------------------------------------
# A word (letters, digits, underscore) or one other non-space character, with the whitespace
# before it; trailing whitespace is a piece of its own.
_PIECE = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")


def split_pieces(text: str) -> list[tuple[int, str]]:
    """(offset, piece) pairs that cover `text` exactly, in order."""
    return [(m.start(), m.group()) for m in _PIECE.finditer(text)]


@dataclass(frozen=True)
class TokenScore:
    """One reported "token" of a scored text: a model token (hf backend) or a text piece."""

    text: str
    offset: int
    logprob: float | None  # None for the first token: nothing precedes it
    top: tuple[str, float] | None  # the most likely token here, where known
    n_tokens: int = 1

    @property
    def top_logprobs(self) -> dict[str, float] | None:
        if self.logprob is None:
            return None
        return dict([self.top]) if self.top else {}


class PieceScorer:
    """Scores text piece by piece through any Model's loglikelihood, caching (prefix, piece).

    One loglikelihood request per piece, each over all the text before it: exact, but its cost
    grows with the square of the prompt's length. The cache makes the shared question of several
    answer choices cost once."""

    def __init__(self, model: Model, cache_size: int = 50_000) -> None:
        self.model = model
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str], tuple[float, bool, int]] = OrderedDict()

    def score(self, text: str, start: int = 0) -> list[TokenScore]:
        """Scores of the pieces of `text[start:]` (offsets into `text`), each given all text before it."""
        pieces = [(start + o, p) for o, p in split_pieces(text[start:])]
        keys = [(hashlib.sha256(text[:o].encode()).hexdigest(), p) for o, p in pieces]
        todo = [i for i, ((o, _), k) in enumerate(zip(pieces, keys)) if o > 0 and k not in self._cache]
        if todo:
            reqs = [Request(kind="loglikelihood", prompt=text[: pieces[i][0]], continuations=(pieces[i][1],)) for i in todo]
            for i, resp in zip(todo, self.model.loglikelihood(reqs)):
                if resp.error:
                    raise CapevalError(f"the model failed to score the prompt: {resp.error}")
                greedy = bool(resp.is_greedy[0]) if resp.is_greedy else False
                self._cache[keys[i]] = (resp.logprobs[0], greedy, resp.n_tokens[0] if resp.n_tokens else 1)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        out = []
        for (o, p), k in zip(pieces, keys):
            if o == 0:
                out.append(TokenScore(p, o, None, None))
                continue
            lp, greedy, n = self._cache[k]
            self._cache.move_to_end(k)
            # The Model says whether greedy decoding gives this piece, not which piece it would give.
            out.append(TokenScore(p, o, lp, (p, lp) if greedy else None, n))
        return out


@dataclass
class _Scored:
    """Per-position results of a forward pass over `ids`."""

    ids: tuple[int, ...]
    own: list[float]  # own[i]: log-probability of ids[i + 1] after ids[: i + 1]
    best: list[int]  # best[i]: the most likely token after ids[: i + 1]
    best_lp: list[float]


class HFTokenScorer:
    """Scores text token by token in one forward pass of an hf-backend model.

    The tokens are those `model.encode` gives the whole text, as its loglikelihood uses; each
    token's text runs from the previous token's end offset to its own, so the tokens cover the
    text exactly (a character split over two byte-level tokens gives one of them empty text).

    Answer choices are scored as separate texts that share their question (and few-shot
    exemplars): when a text shares a long token prefix with one of the last few texts scored,
    that text's per-position scores are reused and the prefix's KV cache comes from the model's
    own prefix cache (`HFModel.prefix_cache` in `models/hf/kv.py`, the one its loglikelihood
    uses), so the next choices only run their own last tokens through the model."""

    MIN_PREFIX = 16  # shorter shared prefixes are not worth a cache entry
    MAX_RECENT = 4  # scored texts kept to find a shared prefix in

    def __init__(self, model: Any) -> None:
        self.model = model
        self._recent: OrderedDict[tuple[int, ...], _Scored] = OrderedDict()
        self.forward_tokens = 0  # tokens run through the model, to see the cache at work

    def score(self, text: str, start: int = 0) -> list[TokenScore]:
        m = self.model
        ids = m.encode(text)
        if not ids:
            return []
        offsets = self._offsets(text, ids)
        if len(ids) > m.max_length:
            raise BadRequest(f"the text has {len(ids)} tokens; the model's context window is {m.max_length}")
        scored = self._score_ids(tuple(ids))
        # Special tokens the tokenizer puts before the text (BOS) have no characters: they are
        # context for the first text token, which then gets a log-probability too.
        special = set(m.tokenizer.all_special_ids)
        leading = 0
        while leading < len(ids) and ids[leading] in special and offsets[leading] == (0, 0):
            leading += 1
        out: list[TokenScore] = []
        end = 0
        for i, (_, tok_end) in enumerate(offsets):
            begin, end = end, max(end, tok_end)
            if i < leading or begin < start:
                continue
            piece = text[begin:end]
            if i == 0:
                out.append(TokenScore(piece, begin, None, None))
                continue
            top_id = scored.best[i - 1]
            top_text = piece if top_id == ids[i] else m.tokenizer.decode([top_id])
            out.append(TokenScore(piece, begin, scored.own[i - 1], (top_text, scored.best_lp[i - 1])))
        return out

    def _score_ids(self, ids: tuple[int, ...]) -> _Scored:
        from capeval.models.hf.kv import common_prefix_len

        shared, prev = max(((common_prefix_len(ids, k), p) for k, p in self._recent.items()), key=lambda x: x[0], default=(0, None))
        if prev is not None and self.MIN_PREFIX <= shared < len(ids):
            self._recent.move_to_end(prev.ids)
            scored = self._extend(prev, ids, shared - 1)
        else:
            scored = self._extend(None, ids, 0)
        self._recent[ids] = scored
        while len(self._recent) > self.MAX_RECENT:
            self._recent.popitem(last=False)
        return scored

    def _extend(self, prev: _Scored | None, ids: tuple[int, ...], done: int) -> _Scored:
        """Scores of `ids`, running only the tokens from `done` on: the first `done` tokens are
        shared with `prev` (a text scored before), whose scores they keep, and their KV cache is
        the model's cached prefix. The token at `done` runs again to give the log-probabilities
        of the token after the shared prefix."""
        import torch

        from capeval.models.hf.kv import expand_cache

        m = self.model
        kwargs: dict[str, Any] = {"use_cache": prev is not None}
        if prev is not None:
            key = ids[:done]
            # the model computes the prefix from its longest cached prefix on (none when `key` is cached)
            self.forward_tokens += done - m.cached_prefix_len(key)
            # a view of the model's stored prefix: the forward pass leaves the stored cache as it is
            kwargs[m._cache_kw] = expand_cache(m.prefix_cache(ids[:done]), 1)
        with torch.inference_mode():
            new = torch.tensor([list(ids[done:])], dtype=torch.long, device=m.device)
            logp = torch.log_softmax(m.model(new, **kwargs).logits[0].float(), dim=-1)
            self.forward_tokens += len(ids) - done
            nxt = torch.tensor(list(ids[done + 1 :]), dtype=torch.long, device=logp.device)
            own = logp[: len(nxt)].gather(1, nxt.unsqueeze(1)).squeeze(1).tolist()
            best_lp, best = logp.max(dim=-1)
            return _Scored(
                ids=ids,
                own=(prev.own[:done] if prev else []) + own,
                best=(prev.best[:done] if prev else []) + best.tolist(),
                best_lp=(prev.best_lp[:done] if prev else []) + best_lp.tolist(),
            )

    def _offsets(self, text: str, ids: list[int]) -> list[tuple[int, int]]:
        tok = self.model.tokenizer
        for add in (False, True):
            enc = tok(text, add_special_tokens=add, return_offsets_mapping=True)
            if list(enc["input_ids"]) == list(ids):
                return [(int(a), int(b)) for a, b in enc["offset_mapping"]]
        raise CapevalError("the tokenizer's offsets do not match the model's tokens")


def prompt_scorer(model: Model) -> PieceScorer | HFTokenScorer:
    """The one-pass token scorer for the hf backend (fast tokenizer with offsets), else pieces."""
    try:
        from capeval.models.hf import HFModel
    except ImportError:
        return PieceScorer(model)
    if isinstance(model, HFModel) and getattr(model.tokenizer, "is_fast", False):
        return HFTokenScorer(model)
    return PieceScorer(model)


