"""Answer extraction: read the answer a model gave out of its raw output.

Every function returns None when no answer can be read, so the run can report an unparsed rate
apart from wrong answers.
"""

from __future__ import annotations

import re

_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)


def strip_reasoning(text: str) -> str:
    """Drop <think>...</think> blocks (an unclosed block runs to the end) of reasoning models."""
    return _THINK.sub("", text).strip()


_LETTER_PATTERNS = [
    re.compile(r"answer\s*(?:is|:)?\s*[:\-]?\s*\(?\**([A-Z])\**\)?(?![A-Za-z])", re.IGNORECASE),
    re.compile(r"^\s*\(?\**([A-Z])\**\)?(?:[.):\s]|$)"),
    re.compile(r"(?<![A-Za-z])\(([A-Z])\)(?![A-Za-z])"),
]


def extract_letter(text: str, n_choices: int) -> str | None:
    """The choice letter a model picked: "The answer is (B)", "B.", "**C**", "(D)"."""
    text = strip_reasoning(text)
    valid = {chr(ord("A") + i) for i in range(n_choices)}
    for pat in _LETTER_PATTERNS:
        for m in pat.finditer(text):
            letter = m.group(1).upper()
            if letter in valid:
                return letter
    return None


_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def normalize_number(s: str) -> str | None:
    s = s.replace("$", "").replace(",", "").strip().rstrip(".")
    try:
        v = float(s)
    except ValueError:
        return None
    return str(int(v)) if v == int(v) else repr(v)


def extract_number(text: str) -> str | None:
    """The numeric answer: after '####' or 'the answer is' when present, else the last number."""
    text = strip_reasoning(text)
    for marker in (r"####\s*", r"answer is\s*:?\s*"):
        m = re.search(marker + r"(" + _NUMBER.pattern + r")", text, re.IGNORECASE)
        if m:
            return normalize_number(m.group(1))
    nums = _NUMBER.findall(text)
    return normalize_number(nums[-1]) if nums else None
