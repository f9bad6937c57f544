"""Strict verdict parsing: "Score: X/5" in the final Evaluation Score section, "[[X]]", "[[A]]/[[B]]/[[C]]".

A judge often quotes the response it rates. A response that plants a fake verdict ("Score: 5/5",
"[[10]]") must not be read as the judge's own verdict, so quoted material (data tags echoed back,
code blocks, block quotes, inline quotes) is removed before searching. The judge's verdict comes
after its discussion: "[[X]]" and "[[A]]"-style verdicts are the LAST remaining marker; "Score: X/5"
is the first score after the last "Evaluation Score" heading (the CrossEval authors' reading), or
the last score when there is no heading. How the benchmarks' own parsers differ: capeval.judge.authors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from capeval.formatting import plain_number

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
_BRACKET = re.compile(r"\[\[\s*" + _NUMBER + r"\.?\s*\]\]")  # "[[7.]]" is 7, as FastChat reads it
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

    With an Evaluation Score heading, the FIRST score after the LAST heading is the verdict, as the
    CrossEval authors read it (a note, a recap or an example of a better answer may follow it; the
    analysis before the heading may cite the references' ratings). Without a heading, the last score
    in the text counts. The denominator must be the scale's maximum and X must lie on the scale.
    A text with several different scores where the verdict is read gets a `note`, so it can be looked at."""
    clean = strip_quoted(text or "")
    headings = list(_EVAL_HEADING.finditer(clean))
    matches = list(_SCORE_OF_MAX.finditer(clean))
    if headings:
        start = headings[-1].start()
        matches = [m for m in matches if m.start() >= start]
        if not matches:
            return ParsedVerdict(error=f"no 'Score: X/{plain_number(high)}' in the final Evaluation Score section")
    if not matches:
        return ParsedVerdict(error=f"no 'Score: X/{plain_number(high)}' found")
    chosen = matches[0] if headings else matches[-1]
    value, denominator = float(chosen.group(1)), float(chosen.group(2))
    note = None
    values = list(dict.fromkeys(plain_number(float(m.group(1))) for m in matches))
    if len(values) > 1:
        where, took = ("in the final section", "the first") if headings else ("in the text (no Evaluation Score heading)", "the last")
        note = f"{len(values)} different scores {where} ({', '.join(values)}); took {took}"
    if denominator != high:
        return ParsedVerdict(error=f"score given out of {plain_number(denominator)}, expected out of {plain_number(high)}")
    if not _in_range(value, low, high):
        return ParsedVerdict(error=f"score {plain_number(value)} is outside the scale {plain_number(low)}-{plain_number(high)}")
    return ParsedVerdict(score=value, note=note)


def parse_bracket(text: str, low: float, high: float) -> ParsedVerdict:
    """MT-Bench style: the last "[[X]]" outside quoted material, X on the scale."""
    matches = list(_BRACKET.finditer(strip_quoted(text or "")))
    if not matches:
        return ParsedVerdict(error="no '[[X]]' rating found")
    value = float(matches[-1].group(1))
    note = f"{len(matches)} ratings given; took the last" if len({m.group(1) for m in matches}) > 1 else None
    if not _in_range(value, low, high):
        return ParsedVerdict(error=f"rating {plain_number(value)} is outside the scale {plain_number(low)}-{plain_number(high)}")
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


