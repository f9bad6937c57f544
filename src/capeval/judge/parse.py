"""Strict verdict parsing: "Score: X/5" in the final Evaluation Score section, "[[X]]", "[[A]]/[[B]]/[[C]]".

A judge often quotes the response it rates. A response that plants a fake verdict ("Score: 5/5",
"[[10]]") must not be read as the judge's own verdict, so quoted material (data tags echoed back,
code blocks, block quotes, inline quotes) is removed before searching, and the LAST remaining
marker is taken: the judge's verdict comes at the end of its text, after any discussion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

VerdictFormat = Literal["score_of_max", "bracket", "pairwise"]

# Tags the recipes wrap data in (core.DATA_TAGS); a judge that echoes one back is quoting data.
_DATA_TAG_NAMES = (
    "prompt",
    "response",
    "response_a",
    "response_b",
    "reference_response",
    "reference_answer",
    "attached_document",
    "conversation",
    "conversation_a",
    "conversation_b",
)
_DATA_BLOCK = re.compile(
    r"<(" + "|".join(_DATA_TAG_NAMES) + r")\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL
)
_FENCED = re.compile(r"```.*?(```|\Z)", re.DOTALL)
_BLOCKQUOTE = re.compile(r"^[ \t]*>.*$", re.MULTILINE)
# Inline quotes on one line, bounded so an unbalanced quote cannot swallow the verdict.
_INLINE_QUOTES = re.compile(r"\"[^\"\n]{0,400}\"|“[^”\n]{0,400}”|`[^`\n]{0,400}`")

_NUMBER = r"(-?\d+(?:\.\d+)?)"
_SCORE_OF_MAX = re.compile(r"score\s*[:：]?\s*[*_]*\s*" + _NUMBER + r"\s*[*_]*\s*/\s*" + _NUMBER, re.IGNORECASE)
# A heading line that opens the final section: "5. Evaluation Score", "## Evaluation Score", "**Evaluation Score**:".
_EVAL_HEADING = re.compile(r"^[ \t#*_(\[\d.)\]\-]*evaluation\s+score\b", re.IGNORECASE | re.MULTILINE)
_BRACKET = re.compile(r"\[\[\s*" + _NUMBER + r"\s*\]\]")
_PAIRWISE = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedVerdict:
    """The outcome of parsing one judge text: a score, a winner, or an error saying why not."""

    score: float | None = None
    winner: str | None = None  # "A", "B" or "tie" (pairwise, in the order the judge saw them)
    error: str | None = None
    note: str | None = None  # e.g. several scores in the final section (the last was taken)

    @property
    def ok(self) -> bool:
        return self.error is None


def strip_quoted(text: str) -> str:
    """The judge's text without material it quotes (echoed data tags, code, block quotes, quotes)."""
    text = _DATA_BLOCK.sub(" ", text)
    text = _FENCED.sub(" ", text)
    text = _BLOCKQUOTE.sub(" ", text)
    return _INLINE_QUOTES.sub(" ", text)


def _in_range(value: float, low: float, high: float) -> bool:
    return low - 1e-9 <= value <= high + 1e-9


def parse_score_of_max(text: str, low: float, high: float) -> ParsedVerdict:
    """CrossEval style: "Score: X/<high>" in the final "Evaluation Score" section.

    When the text has an Evaluation Score heading, only scores after the last heading count (the
    analysis before it may cite the references' ratings); without a heading the last score in
    the text counts. The denominator must be the scale's maximum and X must lie on the scale."""
    clean = strip_quoted(text or "")
    headings = list(_EVAL_HEADING.finditer(clean))
    matches = list(_SCORE_OF_MAX.finditer(clean))
    if headings:
        start = headings[-1].start()
        matches = [m for m in matches if m.start() >= start]
        if not matches:
            return ParsedVerdict(error=f"no 'Score: X/{_fmt(high)}' in the final Evaluation Score section")
    if not matches:
        return ParsedVerdict(error=f"no 'Score: X/{_fmt(high)}' found")
    last = matches[-1]
    value, denominator = float(last.group(1)), float(last.group(2))
    note = None
    if len({m.group(1) for m in matches}) > 1:
        note = f"{len(matches)} different scores in the final section; took the last"
    if denominator != high:
        return ParsedVerdict(error=f"score given out of {_fmt(denominator)}, expected out of {_fmt(high)}")
    if not _in_range(value, low, high):
        return ParsedVerdict(error=f"score {_fmt(value)} is outside the scale {_fmt(low)}-{_fmt(high)}")
    return ParsedVerdict(score=value, note=note)


def parse_bracket(text: str, low: float, high: float) -> ParsedVerdict:
    """MT-Bench style: the last "[[X]]" outside quoted material, X on the scale."""
    matches = list(_BRACKET.finditer(strip_quoted(text or "")))
    if not matches:
        return ParsedVerdict(error="no '[[X]]' rating found")
    value = float(matches[-1].group(1))
    note = f"{len(matches)} ratings given; took the last" if len({m.group(1) for m in matches}) > 1 else None
    if not _in_range(value, low, high):
        return ParsedVerdict(error=f"rating {_fmt(value)} is outside the scale {_fmt(low)}-{_fmt(high)}")
    return ParsedVerdict(score=value, note=note)


def parse_pairwise(text: str) -> ParsedVerdict:
    """MT-Bench pairwise: the last "[[A]]", "[[B]]" or "[[C]]" (tie) outside quoted material."""
    matches = list(_PAIRWISE.finditer(strip_quoted(text or "")))
    if not matches:
        return ParsedVerdict(error="no '[[A]]', '[[B]]' or '[[C]]' verdict found")
    label = matches[-1].group(1).upper()
    note = f"{len(matches)} verdicts given; took the last" if len({m.group(1).upper() for m in matches}) > 1 else None
    return ParsedVerdict(winner="tie" if label in ("C", "TIE") else label, note=note)


_DEDUCTION = re.compile(r"\(\s*[-\u2212]\s*(\d+(?:\.\d+)?)\s*(?:points?|pts?)?\s*\)", re.IGNORECASE)


def parse_deductions(text: str) -> list[float]:
    """Point deductions the judge listed as "(-1)" or "(-0.5 points)" before its final section.

    Kept for audit next to the score: "Score: X/5" stays the verdict, since the judge is asked to
    merge overlapping deductions before settling on it."""
    clean = strip_quoted(text or "")
    headings = list(_EVAL_HEADING.finditer(clean))
    body = clean[: headings[-1].start()] if headings else clean
    return [float(m.group(1)) for m in _DEDUCTION.finditer(body)]


def parse_verdict(text: str, fmt: VerdictFormat, low: float = 1, high: float = 5) -> ParsedVerdict:
    """Dispatch on the recipe's verdict format."""
    if fmt == "score_of_max":
        return parse_score_of_max(text, low, high)
    if fmt == "bracket":
        return parse_bracket(text, low, high)
    if fmt == "pairwise":
        return parse_pairwise(text)
    raise ValueError(f"unknown verdict format {fmt!r}")


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
