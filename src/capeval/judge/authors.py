"""The benchmark authors' own verdict parsers, to count where capeval reads a judge text differently.

Published numbers come from these parsers, so a user comparing capeval with a paper needs to know
how many verdicts the two read differently and why. capeval does not score with them (each has a
reading capeval refuses, see docs/methods.md "Judge verdicts"); `audit` compares the two readings of
one text and names the reason for a difference.

Sources (public code, read for this module):
- CrossEval: facebookresearch/llm-cross-capabilities, evaluation/evaluate_response.py, `parse_score`:
  the first match of `evaluation score[:*\\s]*score:\\s*\\**(\\d+(\\.\\d+)?)/5\\**` (case-insensitive);
  `get_judge` re-asks the judge when that score is missing or outside 1-5.
- MT-Bench: lm-sys/FastChat, fastchat/llm_judge/common.py: `one_score_pattern` `\\[\\[(\\d+\\.?\\d*)\\]\\]`,
  else `one_score_pattern_backup` `\\[(\\d+\\.?\\d*)\\]` (first match; no range check, -1 when none);
  pairwise: "[[A]]" anywhere in the text wins, else "[[B]]", else "[[C]]" (tie), else an error.
- INSTRUCTEVAL (IMPACT): declare-lab/instruct-eval, subjective.py, `score_answers`: every digit
  character of the review overwrites the score, so the LAST digit counts; a score outside 1-5 (or none)
  becomes 1.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from capeval.judge.parse import strip_quoted

if TYPE_CHECKING:
    from capeval.judge.core import Verdict
    from capeval.judge.recipes import JudgeRecipe

AuthorsParser = Literal["crosseval", "fastchat", "fastchat_pairwise", "instructeval"]
AUTHORS_PARSERS: tuple[str, ...] = ("crosseval", "fastchat", "fastchat_pairwise", "instructeval")

PARSER_SOURCES = {
    "crosseval": "CrossEval authors' parse_score (llm-cross-capabilities evaluation/evaluate_response.py)",
    "fastchat": "FastChat llm_judge one_score_pattern (fastchat/llm_judge/common.py)",
    "fastchat_pairwise": "FastChat llm_judge pairwise [[A]]/[[B]]/[[C]] check (fastchat/llm_judge/common.py)",
    "instructeval": "INSTRUCTEVAL subjective.py score_answers (declare-lab/instruct-eval)",
}

_CROSSEVAL = re.compile(r"evaluation score[:\*\s]*score:\s*\**(\d+(\.\d+)?)/5\**", re.IGNORECASE)
_FASTCHAT_ONE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_FASTCHAT_ONE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
_HEADING_WORDS = re.compile(r"evaluation score", re.IGNORECASE)

# Why a text is read differently; the keys are stable (JSON, reports), the labels say it to a person.
REASONS = {
    "out_of_scale": "the authors' parser reads a score outside the scale, which capeval refuses",
    "quoted": "the authors' parser reads a verdict inside quoted material (an echoed response, code, a block quote)",
    "no_heading": "no 'Evaluation Score' heading: the authors' parser reads nothing, capeval the last 'Score: X/5'",
    "format": "the verdict is not in the authors' exact form, so their parser reads nothing",
    "several": "several different verdicts: the authors' parser and capeval pick different ones",
    "capeval_refused": "capeval refuses a verdict the authors' parser reads",
    "last_digit": "the authors' parser reads the last digit of the text, not the stated score",
    "default_1": "the authors' script turns a review without a usable digit into a 1; capeval leaves it unrated",
}


@dataclass(frozen=True)
class Difference:
    """One judge text that the authors' parser reads differently from capeval."""

    parser: str
    authors: float | str | None  # the authors' reading (None: their parser reads nothing)
    capeval: float | str | None  # capeval's reading (None: unparsed)
    reason: str  # a key of REASONS

    @property
    def explanation(self) -> str:
        return REASONS[self.reason]

    def to_dict(self) -> dict[str, object]:
        return {"parser": self.parser, "authors": self.authors, "capeval": self.capeval, "reason": self.reason}


def crosseval_authors_score(text: str) -> float | None:
    """The CrossEval authors' reading: the first "Evaluation Score ... Score: X/5", any X."""
    m = _CROSSEVAL.search(text or "")
    return float(m.group(1)) if m else None


def fastchat_single_score(text: str) -> float | None:
    """FastChat's single-answer reading: the first "[[X]]", else the first "[X]"; None for its -1."""
    m = _FASTCHAT_ONE.search(text or "") or _FASTCHAT_ONE_BACKUP.search(text or "")
    return float(m.group(1)) if m else None


def fastchat_pairwise_winner(text: str) -> str | None:
    """FastChat's pairwise reading: "A" if "[[A]]" occurs anywhere, else "B", else "tie" for "[[C]]"."""
    text = text or ""
    for marker, winner in (("[[A]]", "A"), ("[[B]]", "B"), ("[[C]]", "tie")):
        if marker in text:
            return winner
    return None


def instructeval_score(text: str) -> int:
    """INSTRUCTEVAL's reading of a writing review: its last digit character, 1 when that is not 1-5."""
    digits = [c for c in text or "" if c.isdigit()]
    score = int(digits[-1]) if digits else 0
    return score if 1 <= score <= 5 else 1


def authors_reading(parser: str, text: str) -> float | str | None:
    if parser == "crosseval":
        return crosseval_authors_score(text)
    if parser == "fastchat":
        return fastchat_single_score(text)
    if parser == "fastchat_pairwise":
        return fastchat_pairwise_winner(text)
    if parser == "instructeval":
        return float(instructeval_score(text))
    raise ValueError(f"unknown authors' parser {parser!r}")


def audit(
    parser: str, text: str, capeval: float | str | None, scale: tuple[float, float] = (1, 5)
) -> Difference | None:
    """How the authors' parser reads `text` against capeval's reading (None: unparsed), or None when
    they agree. `scale` is the recipe's (1-5 for CrossEval and INSTRUCTEVAL, 1-10 for MT-Bench)."""
    authors = authors_reading(parser, text)
    if _same(authors, capeval):
        return None
    low, high = scale
    if parser == "instructeval":
        if not _last_digit_on_scale(text):
            return Difference(parser, authors, capeval, "default_1")
        if capeval is None:
            return Difference(parser, authors, capeval, "capeval_refused")
        return Difference(parser, authors, capeval, "last_digit")
    if isinstance(authors, float) and not low <= authors <= high:
        return Difference(parser, authors, capeval, "out_of_scale")
    if authors is not None and not _same(authors_reading(parser, strip_quoted(text)), authors):
        return Difference(parser, authors, capeval, "quoted")
    if authors is None:
        if parser == "crosseval" and not _HEADING_WORDS.search(text or ""):
            return Difference(parser, authors, capeval, "no_heading")
        return Difference(parser, authors, capeval, "format")
    if capeval is None:
        return Difference(parser, authors, capeval, "capeval_refused")
    return Difference(parser, authors, capeval, "several")


def count_reasons(differences: Iterable[Difference | None]) -> dict[str, int]:
    """reason -> how many texts differ for it, most frequent first."""
    return dict(Counter(d.reason for d in differences if d is not None).most_common())


def describe(counts: dict[str, int], n: int, parser: str) -> str:
    """One line for a person: how many of n verdicts the authors' parser reads differently, and why."""
    total = sum(counts.values())
    if not n:
        return f"no verdict texts to compare with the {PARSER_SOURCES[parser]}"
    if not total:
        return f"all {n} verdicts read as the {PARSER_SOURCES[parser]} reads them"
    why = "; ".join(f"{k} {reason}: {REASONS[reason]}" for reason, k in counts.items())
    return f"{total} of {n} verdicts read differently from the {PARSER_SOURCES[parser]} ({why})"


def _same(a: float | str | None, b: float | str | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return abs(float(a) - float(b)) < 1e-9


def _last_digit_on_scale(text: str) -> bool:
    digits = [c for c in text or "" if c.isdigit()]
    return bool(digits) and 1 <= int(digits[-1]) <= 5


def audit_verdict(recipe: JudgeRecipe, verdict: Verdict) -> list[Difference]:
    """The differences between the recipe's authors' parser and capeval on a verdict's final text(s)
    (both orders for pairwise); empty when the recipe has no authors' parser or they agree."""
    from capeval.judge.parse import parse_verdict

    parser = recipe.authors_parser
    if parser is None:
        return []
    texts = verdict.metadata.get("texts") if recipe.pairwise else [verdict.text]
    out = []
    for text in texts or []:
        if not text:
            continue  # empty response or failed call: nothing was read by either
        ours = parse_verdict(text, recipe.verdict, recipe.scale[0], recipe.scale[1])
        reading = ours.winner if recipe.pairwise else ours.score
        d = audit(parser, text, reading, recipe.scale)
        if d is not None:
            out.append(d)
    return out


def audit_metadata(recipe: JudgeRecipe, verdict: Verdict, prefix: str = "") -> dict[str, object]:
    """Sample metadata that flags a verdict for a person: "verdict_note" (several different scores in
    the text) and "authors_reading" (how the authors' parser reads it, where that differs)."""
    meta: dict[str, object] = {}
    note = verdict.metadata.get("parse_note")
    if note:
        meta[f"{prefix}verdict_note"] = note
    differences = audit_verdict(recipe, verdict)
    if differences:
        meta[f"{prefix}authors_reading"] = [d.to_dict() for d in differences]
    return meta
