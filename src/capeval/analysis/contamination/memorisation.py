"""Contamination check (c): verbatim memorisation, the model continuing an item's first half into its second."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from capeval.analysis.contamination.errors import ContaminationError
from capeval.types import GenerationParams, Request, Response

if TYPE_CHECKING:
    from capeval.engine import CacheMode


@dataclass(frozen=True)
class MemorisationItem:
    id: str
    prefix: str
    truth: str  # the rest of the item the model should not be able to produce verbatim
    continuation: str
    exact: bool  # the continuation's first len(truth) words equal the truth's (normalised)
    rouge_l: float  # LCS-based F1 over normalised words
    edit_similarity: float  # 1 - word-level edit distance / max length


@dataclass(frozen=True)
class MemorisationResult:
    items: tuple[MemorisationItem, ...]
    exact_rate: float
    near_exact_rate: float  # share with rouge_l >= near_threshold
    mean_rouge_l: float
    mean_edit_similarity: float
    near_threshold: float
    prefix_fraction: float
    # items whose model call failed for good: no continuation to compare, left out of every rate
    failed: tuple[str, ...] = ()


def normalise_words(text: str) -> list[str]:
    """Lowercased word tokens with punctuation removed: the unit of every text comparison here."""
    return re.sub(r"[^\w\s]", " ", text.lower()).split()


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(candidate: Sequence[str], reference: Sequence[str]) -> float:
    if not candidate or not reference:
        return 0.0
    lcs = lcs_length(candidate, reference)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(candidate), lcs / len(reference)
    return 2 * p * r / (p + r)


def edit_similarity(a: Sequence[str], b: Sequence[str]) -> float:
    if not a and not b:
        return 1.0
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return 1 - prev[-1] / max(len(a), len(b))


def split_item(text: str, prefix_fraction: float = 0.5) -> tuple[str, str]:
    """(prefix, rest) at a word boundary after `prefix_fraction` of the words."""
    if not 0 < prefix_fraction < 1:
        raise ContaminationError(f"prefix fraction {prefix_fraction} must be between 0 and 1")
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    if len(spans) < 2:
        return text, ""
    k = min(len(spans) - 1, max(1, int(len(spans) * prefix_fraction)))
    cut = spans[k - 1][1]
    return text[:cut], text[cut:].strip()


def memorisation_requests(
    items: Sequence[tuple[str, str]], prefix_fraction: float = 0.5, task: str = "memorisation", max_tokens: int | None = None
) -> tuple[list[Request], list[tuple[str, str, str]]]:
    """Greedy completion requests of each item's first part; also (id, prefix, truth) per item."""
    reqs: list[Request] = []
    parts: list[tuple[str, str, str]] = []
    for item_id, text in items:
        prefix, rest = split_item(text, prefix_fraction)
        if not rest:
            continue
        # about 1.5 tokens per word, plus slack, so a verbatim continuation is never cut short
        budget = max_tokens or min(512, int(len(rest.split()) * 1.5) + 16)
        reqs.append(Request("generate", prefix, params=GenerationParams(max_tokens=budget, temperature=0.0), task=task, sample_id=item_id))
        parts.append((item_id, prefix, rest))
    return reqs, parts


def score_memorisation(
    parts: Sequence[tuple[str, str, str]], responses: Sequence[Response], near_threshold: float = 0.9, prefix_fraction: float = 0.5
) -> MemorisationResult:
    items = []
    failed = []
    for (item_id, prefix, truth), resp in zip(parts, responses):
        if resp.error is not None:  # a failed call is no evidence either way
            failed.append(item_id)
            continue
        cont = resp.text or ""
        t = normalise_words(truth)
        c = normalise_words(cont)[: len(t)]  # only the span that should reproduce the truth
        items.append(MemorisationItem(item_id, prefix, truth, cont, bool(t) and c == t, rouge_l(c, t), edit_similarity(c, t)))
    n = len(items)

    def mean(xs: Iterable[float]) -> float:
        xs = list(xs)
        return sum(xs) / len(xs) if xs else math.nan

    return MemorisationResult(
        items=tuple(items),
        exact_rate=mean(float(i.exact) for i in items) if n else math.nan,
        near_exact_rate=mean(float(i.rouge_l >= near_threshold) for i in items) if n else math.nan,
        mean_rouge_l=mean(i.rouge_l for i in items),
        mean_edit_similarity=mean(i.edit_similarity for i in items),
        near_threshold=near_threshold,
        prefix_fraction=prefix_fraction,
        failed=tuple(failed),
    )


def verbatim_memorisation(
    model: Any,
    items: Sequence[tuple[str, str]],
    store: Any = None,
    prefix_fraction: float = 0.5,
    near_threshold: float = 0.9,
    progress: bool = False,
    max_tokens: int | None = None,
    cache: CacheMode = "use",
) -> MemorisationResult:
    """Give `model` the first part of each (id, text) item and compare its greedy continuation
    with the true rest. Calls go through the engine, so they are cached in `store` (`cache`: the
    engine's --cache mode)."""
    from capeval.engine import Progress, execute

    reqs, parts = memorisation_requests(items, prefix_fraction, max_tokens=max_tokens)
    with Progress(progress) as bar:
        responses, _ = execute(model, reqs, store, progress=bar, cache=cache)
    return score_memorisation(parts, responses, near_threshold, prefix_fraction)
