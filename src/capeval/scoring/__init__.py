"""Scorers: turn a sample's responses into a Score (accuracy by log-likelihood, extraction + match)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

from capeval.scoring.extract import extract_letter, extract_number, normalize_number, strip_reasoning
from capeval.types import Response, Sample, Score

if TYPE_CHECKING:
    from capeval.tasks.base import Scorer, Task

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _error_score(sample: Sample, responses: Sequence[Response]) -> Score | None:
    errors = [r.error for r in responses if r.error]
    if errors:
        return Score(sample.id, sample.task, {}, None, False, sample.target, {"error": errors[0]})
    return None


def mc_loglikelihood() -> "Scorer":
    """acc: the choice with the highest log-likelihood is right. acc_norm: the same after dividing
    each log-likelihood by the continuation's length in characters (as lm-evaluation-harness)."""

    def score(sample: Sample, responses: Sequence[Response], task: "Task") -> Score:
        err = _error_score(sample, responses)
        if err:
            return err
        (resp,) = responses
        conts = task.continuations(sample)
        lls = resp.logprobs
        pred = max(range(len(lls)), key=lambda i: lls[i])
        norm = [ll / max(1, len(c)) for ll, c in zip(lls, conts)]
        pred_norm = max(range(len(norm)), key=lambda i: norm[i])
        gold = int(sample.target)
        return Score(
            sample.id,
            sample.task,
            {"acc": float(pred == gold), "acc_norm": float(pred_norm == gold)},
            extracted=LETTERS[pred],
            target=LETTERS[gold],
            metadata={"logprobs": list(lls)},
        )

    return score


def mc_generate() -> "Scorer":
    """Generative multiple choice: the letter read from the output must be the right one."""

    def score(sample: Sample, responses: Sequence[Response], task: "Task") -> Score:
        err = _error_score(sample, responses)
        if err:
            return err
        assert sample.choices is not None
        letter = extract_letter(responses[0].text or "", len(sample.choices))
        gold = LETTERS[int(sample.target)]
        return Score(sample.id, sample.task, {"acc": float(letter == gold)}, letter, letter is not None, gold)

    return score


def exact_match(extract: Callable[[str], str | None] | None = None, normalize: Callable[[str], str] | None = None) -> "Scorer":
    """exact_match: the extracted answer equals the target after normalisation.

    Args:
        extract: reads the answer from the raw output (default: the stripped output).
        normalize: applied to both sides before comparing (default: strip + lower case).
    """
    norm = normalize or (lambda s: s.strip().lower())

    def score(sample: Sample, responses: Sequence[Response], task: "Task") -> Score:
        err = _error_score(sample, responses)
        if err:
            return err
        text = strip_reasoning(responses[0].text or "")
        got = extract(text) if extract else text.strip()
        ok = got is not None and norm(got) == norm(str(sample.target))
        return Score(sample.id, sample.task, {"exact_match": float(ok)}, got, got is not None, sample.target)

    return score


def numeric_match() -> "Scorer":
    """exact_match on numbers: '1,000', '$1000.00' and '1000' are equal."""
    return exact_match(extract=extract_number, normalize=lambda s: normalize_number(s) or s.strip())


def default_scorer(task: "Task") -> "Scorer":
    if task.output_type == "multiple_choice":
        return mc_loglikelihood() if task.mc_mode == "loglikelihood" else mc_generate()
    return exact_match()


SCORERS: dict[str, Callable[[], "Scorer"]] = {
    "mc_loglikelihood": mc_loglikelihood,
    "mc_generate": mc_generate,
    "exact_match": exact_match,
    "numeric_match": numeric_match,
}

__all__ = [
    "SCORERS",
    "default_scorer",
    "exact_match",
    "extract_letter",
    "extract_number",
    "mc_generate",
    "mc_loglikelihood",
    "numeric_match",
    "strip_reasoning",
]
