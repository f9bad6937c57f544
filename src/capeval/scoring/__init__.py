"""Scorers: turn a sample's responses into a Score (log-likelihood accuracy, extraction + match,
numeric and MATH equivalence, DROP EM/F1, pass@k of code run in the sandbox, bits per byte)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from capeval import plugins
from capeval.plugins import Registry
from capeval.scoring.base import Scorer, ScoringContext, error_score, errors_scored
from capeval.scoring.code import humaneval_scorer, score_code_samples
from capeval.scoring.extract import (
    extract_after_answer_is,
    extract_boxed,
    extract_code,
    extract_letter,
    extract_math_answer,
    extract_number,
    first_answer_segment,
    normalize_number,
    strip_reasoning,
)
from capeval.scoring.metrics import (
    LOWER_IS_BETTER,
    bits_per_byte,
    drop_em_f1,
    drop_max_em_f1,
    higher_is_better,
    math_equivalent,
    math_grader,
    pass_at_k,
)
from capeval.types import LETTERS, Response, Sample, Score

if TYPE_CHECKING:
    from capeval.tasks.base import Task


def mc_loglikelihood() -> Scorer:
    """acc: the choice with the highest log-likelihood is right. acc_norm: the same after dividing
    each log-likelihood by the choice's length in characters, the space before it not counted (as
    lm-evaluation-harness, whose completion_len is over the choices without the target delimiter)."""

    def score(sample: Sample, responses: Sequence[Response], task: Task) -> Score:
        (resp,) = responses
        delimiter = task.layout.target_delimiter
        conts = [c.removeprefix(delimiter) for c in task.continuations(sample)]
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

    return errors_scored(score)


def bits_per_byte_scorer() -> Scorer:
    """bits_per_byte: how well the model predicts the sample's text (its one continuation) given the
    prompt, -log p(text | prompt) / (ln 2 * the text's UTF-8 bytes) (`bits_per_byte`). Lower is
    better. The score's metadata keeps the summed log-probability, the bytes and the tokens."""

    def score(sample: Sample, responses: Sequence[Response], task: Task) -> Score:
        (resp,) = responses
        (text,) = task.continuations(sample)
        (loglikelihood,) = resp.logprobs
        n_bytes = len(text.encode("utf-8"))
        return Score(
            sample.id,
            sample.task,
            {"bits_per_byte": bits_per_byte(loglikelihood, n_bytes)},
            metadata={"loglikelihood": loglikelihood, "bytes": n_bytes, "tokens": resp.n_tokens[0] if resp.n_tokens else None},
        )

    return errors_scored(score)


def greedy_target_scorer() -> Scorer:
    """acc: the sample's text (its one continuation) is what greedy decoding would produce after the
    prompt, token for token (lm-evaluation-harness's `acc` of loglikelihood tasks, e.g. LAMBADA's
    last word). A backend that does not say whether it is leaves the sample unparsed (counted as
    wrong and in the unparsed rate), never silently right or wrong. The score's metadata keeps the
    summed log-probability and the tokens."""

    def score(sample: Sample, responses: Sequence[Response], task: Task) -> Score:
        (resp,) = responses
        (loglikelihood,) = resp.logprobs
        meta: dict[str, Any] = {"loglikelihood": loglikelihood, "tokens": resp.n_tokens[0] if resp.n_tokens else None}
        if not resp.is_greedy:
            meta["error"] = "the backend did not report whether the text is the greedy continuation"
            return Score(sample.id, sample.task, {"acc": 0.0}, None, False, sample.target, meta)
        greedy = bool(resp.is_greedy[0])
        return Score(sample.id, sample.task, {"acc": float(greedy)}, str(greedy), True, sample.target, meta)

    return errors_scored(score)


def mc_generate() -> Scorer:
    """Generative multiple choice: the letter read from the output must be the right one."""

    def score(sample: Sample, responses: Sequence[Response], task: Task) -> Score:
        assert sample.choices is not None
        letter = extract_letter(responses[0].text or "", len(sample.choices))
        gold = LETTERS[int(sample.target)]
        return Score(sample.id, sample.task, {"acc": float(letter == gold)}, letter, letter is not None, gold)

    return errors_scored(score)


def exact_match(extract: Callable[[str], str | None] | None = None, normalize: Callable[[str], str] | None = None) -> Scorer:
    """exact_match: the extracted answer equals the target after normalisation.

    Args:
        extract: reads the answer from the raw output (default: the stripped output).
        normalize: applied to both sides before comparing (default: strip + lower case).
    """
    norm = normalize or (lambda s: s.strip().lower())

    def score(sample: Sample, responses: Sequence[Response], task: Task) -> Score:
        text = strip_reasoning(responses[0].text or "")
        got = extract(text) if extract else text.strip()
        ok = got is not None and norm(got) == norm(str(sample.target))
        return Score(sample.id, sample.task, {"exact_match": float(ok)}, got, got is not None, sample.target)

    return errors_scored(score)


def numeric_match() -> Scorer:
    """exact_match on numbers: '1,000', '$1000.00' and '1000' are equal."""
    return exact_match(extract=extract_number, normalize=lambda s: normalize_number(s) or s.strip())


def _gold_number(target: Any) -> str | None:
    text = str(target)
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    return normalize_number(text) or extract_number(text)


def gsm8k_scorer() -> Scorer:
    """exact_match for GSM8K: the number the model gave for the question asked equals the gold one.

    The output is first cut at an invented follow-up question (`first_answer_segment`), then read
    by `extract_number` ("####", then "the answer is", then \\boxed{}, then the last number).
    The target may be the bare number or the dataset's full answer ending in "#### N"."""

    def score(sample: Sample, responses: Sequence[Response], task: Task) -> Score:
        got = extract_number(first_answer_segment(responses[0].text or ""))
        gold = _gold_number(sample.target)
        ok = got is not None and got == gold
        return Score(sample.id, sample.task, {"exact_match": float(ok)}, got, got is not None, gold)

    return errors_scored(score)


def math_scorer() -> Scorer:
    """equiv for MATH: the final answer (\\boxed{} first, see `extract_math_answer`) is
    mathematically equal to the gold answer (`math_equivalent`: normalised strings, then math-verify).
    A target holding a full solution is reduced to its last \\boxed{} answer. Each score's metadata
    names the grader and its version (`math_grader`), which the run's config records."""
    grader = math_grader()

    def score(sample: Sample, responses: Sequence[Response], task: Task) -> Score:
        got = extract_math_answer(first_answer_segment(responses[0].text or ""))
        gold = str(sample.target)
        gold = extract_boxed(gold) or gold
        ok = math_equivalent(got, gold)
        return Score(sample.id, sample.task, {"equiv": float(ok)}, got, got is not None, gold, {"grader": grader})

    return errors_scored(score)


_BBH_WORDS = {"true", "false", "yes", "no", "valid", "invalid"}


def _bbh_normalize(s: str) -> str:
    return " ".join(s.strip().strip(".").lower().split())


def bbh_answer(text: str, target: str) -> str | None:
    """The BBH answer in the target's form: "(B)" for option targets, a number for numeric ones,
    the first True/False/Yes/No/valid/invalid word for those, else the text after "the answer is"
    (or the whole short answer when the model gave no marker)."""
    seg = first_answer_segment(text)
    after = extract_after_answer_is(seg)
    body = after if after is not None else seg
    t = target.strip()
    if re.fullmatch(r"\([A-Z]\)", t):
        # the whole segment: extract_letter reads "the answer is (b)" itself, in either case
        letter = extract_letter(seg, 26)
        return f"({letter})" if letter else None
    if normalize_number(t) is not None:
        # the whole segment: extract_number finds "the answer is" itself and reads the number after
        # it ("the answer is 24 because 24 = 4 x 6" is 24; the text after the marker alone read 6)
        return extract_number(seg)
    if t.lower() in _BBH_WORDS:
        m = re.search(r"\b(true|false|yes|no|valid|invalid)\b", body, re.IGNORECASE)
        return m.group(1).capitalize() if m and t[:1].isupper() else (m.group(1).lower() if m else None)
    if after is None and len(seg.split("\n")) > 1:
        return None  # reasoning without a marked answer: nothing trustworthy to read
    return body.strip() or None


def bbh_scorer() -> Scorer:
    """exact_match for BIG-Bench Hard (chain of thought): the answer after "the answer is",
    read in the target's form (`bbh_answer`), equals the target after trimming and lower-casing."""

    def score(sample: Sample, responses: Sequence[Response], task: Task) -> Score:
        target = str(sample.target)
        got = bbh_answer(responses[0].text or "", target)
        if got is not None and normalize_number(target) is not None:
            ok = got == normalize_number(target)
        else:
            ok = got is not None and _bbh_normalize(got) == _bbh_normalize(target)
        return Score(sample.id, sample.task, {"exact_match": float(ok)}, got, got is not None, target)

    return errors_scored(score)


def _drop_golds(target: Any) -> list[list[str]]:
    """DROP targets as alternative answers, each a list of spans: accepts "x", ["x", "y"]
    (one answer's spans) or [["x"], ["y", "z"]] (alternatives)."""
    if isinstance(target, str):
        return [[target]]
    items = list(target or [])
    if items and all(isinstance(i, str) for i in items):
        return [items]
    return [[str(s) for s in i] if not isinstance(i, str) else [i] for i in items]


def drop_scorer() -> Scorer:
    """em and f1 for DROP (official normalisation and span alignment, `drop_em_f1`), the max over
    the alternative gold answers. The prediction is the text after the last "the answer is" /
    "Answer:", else the first line of the output."""

    def score(sample: Sample, responses: Sequence[Response], task: Task) -> Score:
        seg = first_answer_segment(responses[0].text or "")
        got = extract_after_answer_is(seg)
        if got is None:
            got = seg.split("\n", 1)[0].strip() or None
        golds = _drop_golds(sample.target)
        em, f1 = drop_max_em_f1(got, golds) if got is not None else (0.0, 0.0)
        return Score(sample.id, sample.task, {"em": em, "f1": f1}, got, got is not None, golds)

    return errors_scored(score)


def default_scorer(task: Task) -> Scorer:
    if task.output_type == "loglikelihood":
        return bits_per_byte_scorer()
    if task.output_type == "multiple_choice":
        return mc_loglikelihood() if task.mc_mode == "loglikelihood" else mc_generate()
    return exact_match()


# scorer name -> factory returning the scorer (YAML `scorer: NAME`); capeval's own, then other
# packages' `capeval.scorers` entry points (read on first lookup)
SCORERS: Registry[Callable[..., Any]] = Registry("scorer", "capeval.scorers")
for _name, _factory in {
    "mc_loglikelihood": mc_loglikelihood,
    "mc_generate": mc_generate,
    "exact_match": exact_match,
    "numeric_match": numeric_match,
    "gsm8k": gsm8k_scorer,
    "math": math_scorer,
    "bbh": bbh_scorer,
    "drop": drop_scorer,
    "humaneval": humaneval_scorer,
    "bits_per_byte": bits_per_byte_scorer,
    "greedy_target": greedy_target_scorer,
}.items():
    SCORERS.add(_name, _factory, plugins.BUILTIN_ORIGIN)


def scorer_names() -> list[str]:
    """capeval's scorers and those installed packages declare (a name two origins declare raises)."""
    for name, (_, origin) in plugins.index("capeval.scorers", SCORERS.kind).items():
        SCORERS.check(name, origin)
    return sorted({*SCORERS, *plugins.index("capeval.scorers", SCORERS.kind)})


def get_scorer(name: str) -> Scorer:
    """The scorer registered as `name`. An entry may be the scorer itself or a factory taking no
    arguments that returns one (as capeval's are)."""
    declared = plugins.index("capeval.scorers", SCORERS.kind)
    if name in declared:
        ep, origin = declared[name]
        SCORERS.check(name, origin)
        if name not in SCORERS:
            SCORERS.add(name, plugins.load(ep, origin), origin)
    if name not in SCORERS:
        from capeval.errors import UnknownNameError

        raise UnknownNameError("scorer", name, scorer_names())
    scorer: Scorer = plugins.call_factory(SCORERS[name])
    return scorer


def scorer_from_reference(reference: str, near: Path | None = None) -> Scorer:
    """The scorer at `module:function` (YAML `scorer: my_scorers:contains_answer`): `module` is an
    importable module, or `module.py` beside the task file (`near`)."""
    import importlib

    module_name, _, attr = reference.partition(":")
    file = near / f"{module_name}.py" if near is not None else None
    if file is not None and file.is_file():
        module = plugins.import_file(file)
    else:
        module = importlib.import_module(module_name)
    if not hasattr(module, attr):
        raise AttributeError(f"module {module_name} has no attribute '{attr}'")
    scorer: Scorer = plugins.call_factory(getattr(module, attr))
    return scorer


__all__ = [
    "LETTERS",
    "LOWER_IS_BETTER",
    "SCORERS",
    "Scorer",
    "ScoringContext",
    "bbh_answer",
    "bbh_scorer",
    "bits_per_byte",
    "bits_per_byte_scorer",
    "default_scorer",
    "drop_em_f1",
    "drop_max_em_f1",
    "drop_scorer",
    "error_score",
    "errors_scored",
    "exact_match",
    "extract_after_answer_is",
    "extract_boxed",
    "extract_code",
    "extract_letter",
    "extract_math_answer",
    "extract_number",
    "first_answer_segment",
    "get_scorer",
    "greedy_target_scorer",
    "gsm8k_scorer",
    "higher_is_better",
    "humaneval_scorer",
    "math_equivalent",
    "math_scorer",
    "mc_generate",
    "mc_loglikelihood",
    "numeric_match",
    "pass_at_k",
    "score_code_samples",
    "scorer_from_reference",
    "scorer_names",
    "strip_reasoning",
]
