"""Draft tokens for speculative greedy decoding, looked up in the row's own text (prompt lookup).

A row's next tokens are guessed as those that followed the most recent earlier occurrence of its
last three tokens (else of its last two) in its prompt and output. The guesses are checked by the
model in the row's next step (generation.py): a guess is kept only where it is the model's own
greedy pick, so the output is the greedy output. Names and numbers copied from the question, the
few-shot answers' fixed phrases, and a small model's repetition loops (which run to the token
limit) are guessed right; each right guess is a token the row gets without a step of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

# n-gram sizes looked up, longest first
SIZES = (3, 2)


class PromptLookup:
    """The n-gram index of one row's tokens (prompt, then output as it grows) and its drafts."""

    def __init__(self, tokens: Sequence[int]) -> None:
        self.seq: list[int] = []
        self._index: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in SIZES}
        # for each size, where the previous occurrence of the current last n tokens ended
        self._match: dict[int, int | None] = dict.fromkeys(SIZES)
        self.extend(tokens)

    def extend(self, tokens: Sequence[int]) -> None:
        for tok in tokens:
            self.seq.append(tok)
            end = len(self.seq)
            for n in SIZES:
                if end >= n:
                    key = tuple(self.seq[end - n : end])
                    self._match[n] = self._index[n].get(key)
                    self._index[n][key] = end

    def draft(self, k: int) -> list[int]:
        """Up to `k` tokens guessed to come next: those after the last n tokens' previous occurrence,
        continued as a repeating cycle when it runs into the end (a loop repeats); [] when the last
        tokens occurred nowhere before."""
        if k <= 0:
            return []
        for n in SIZES:
            start = self._match[n]
            if start is not None:
                period = len(self.seq) - start
                return [self.seq[start + i % period] for i in range(k)]
        return []
