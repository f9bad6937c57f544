"""Contamination check (d): n-gram overlap of benchmark items with a pretraining corpus sample."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from capeval.analysis.contamination.errors import ContaminationError
from capeval.analysis.contamination.memorisation import normalise_words


@dataclass(frozen=True)
class ItemOverlap:
    id: str
    n_ngrams: int  # 0 when the item is shorter than n words
    n_matched: int
    ratio: float | None
    flagged: bool


@dataclass(frozen=True)
class NgramOverlapResult:
    items: tuple[ItemOverlap, ...]
    n: int
    flag_ratio: float
    corpus_tokens: int

    @property
    def flagged(self) -> list[ItemOverlap]:
        return [i for i in self.items if i.flagged]

    @property
    def n_any_overlap(self) -> int:
        return sum(1 for i in self.items if i.n_matched > 0)


def _ngram_hashes(tokens: Sequence[str], n: int) -> set[int]:
    return {hash(tuple(tokens[i : i + n])) for i in range(len(tokens) - n + 1)}


def _corpus_tokens(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            yield from normalise_words(line)


def ngram_overlap(
    items: Sequence[tuple[str, str]], corpus: str | Path, n: int = 13, flag_ratio: float = 0.5
) -> NgramOverlapResult:
    """Share of each item's word n-grams that occur in `corpus`, streamed line by line.

    Only the items' n-gram hashes are held in memory, so the corpus may be far larger than RAM;
    n-grams run across line breaks. An item is flagged when its ratio reaches `flag_ratio`."""
    path = Path(corpus)
    if not path.is_file():
        raise ContaminationError(f"corpus file not found: {path}", "pass a plain-text file with --corpus")
    if n < 1:
        raise ContaminationError(f"n-gram size must be positive, got {n}")
    item_grams = [(item_id, _ngram_hashes(normalise_words(text), n)) for item_id, text in items]
    wanted: set[int] = set().union(*(g for _, g in item_grams)) if item_grams else set()
    found: set[int] = set()
    window: deque[str] = deque(maxlen=n)
    count = 0
    for tok in _corpus_tokens(path):
        count += 1
        window.append(tok)
        if len(window) == n:
            h = hash(tuple(window))
            if h in wanted:
                found.add(h)
    out = []
    for item_id, grams in item_grams:
        matched = len(grams & found)
        ratio = matched / len(grams) if grams else None
        out.append(ItemOverlap(item_id, len(grams), matched, ratio, ratio is not None and ratio >= flag_ratio and matched > 0))
    return NgramOverlapResult(tuple(out), n, flag_ratio, count)
