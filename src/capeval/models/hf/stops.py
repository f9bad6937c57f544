"""Incremental stop-string detection: only the newest tokens are decoded at each step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class StopWatch:
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
