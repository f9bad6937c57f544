"""Judging: items, verdicts and `run_judge`, which sends judge prompts through the engine and parses strictly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from capeval.judge.parse import ParsedVerdict, parse_deductions, parse_verdict
from capeval.scoring.base import JUDGE_CALL_FAILED
from capeval.types import GenerationParams, Message, Request, Response

if TYPE_CHECKING:
    from capeval.engine import CacheMode
    from capeval.judge.recipes import JudgeRecipe
    from capeval.models.base import Model
    from capeval.store import Store

# The CrossEval authors' judge settings (evaluation/evaluate_response.py).
JUDGE_TEMPERATURE = 0.0
JUDGE_SEED = 42
EMPTY_RESPONSE = "empty response"


@dataclass(frozen=True)
class Reference:
    """A reference response to the same prompt with its human ratings and their explanations."""

    response: str
    ratings: tuple[float, ...] = ()
    explanations: tuple[str, ...] = ()

    @property
    def mean_rating(self) -> float | None:
        return sum(self.ratings) / len(self.ratings) if self.ratings else None


@dataclass(frozen=True)
class JudgeItem:
    """One thing to judge.

    `prompt` is the (last) user question and `response` the answer under review; `response_b` the
    second answer for pairwise recipes. `references` are other responses to the same prompt with
    human ratings (multi-reference recipes show the first `n_references`). `reference_answer` is a
    correct answer for reference-guided grading. `capability` switches on the recipe's add-ons
    (tool use, long context); `attached` is the attached document's text for long-context prompts.

    Multi-turn (MT-Bench's second turn): `history` holds the earlier turns of the conversation as
    chat messages, e.g. (Message("user", q1), Message("assistant", a1)); `prompt` is then q2 and
    `response` a2. For pairwise, `history_b` holds model B's own earlier turns (its own a1; the
    user turns are the same). `reference_history` optionally holds reference answers of the earlier
    turns, so a reference-guided judge of turn 2 sees the reference for turn 1 too.
    """

    id: str
    prompt: str
    response: str
    references: tuple[Reference, ...] = ()
    reference_answer: str | None = None
    capability: str | None = None
    attached: str | None = None
    response_b: str | None = None
    history: tuple[Message, ...] = ()
    history_b: tuple[Message, ...] = ()
    reference_history: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """A judge's verdict on one item.

    `score` is on the recipe's own scale (None when not parsed or pairwise). For pairwise recipes,
    `winner` is "A", "B" or "tie" after judging both orders (an inconsistent pair becomes "tie");
    `metadata["texts"]` keeps both raw judge texts. `parsed` is False when no valid verdict could be
    read after all retries (then `error` says why); `attempts` counts judge calls for the verdict
    (per order for pairwise, the larger of the two). `text` is the judge's full final text.
    """

    item_id: str
    score: float | None
    winner: str | None
    parsed: bool
    attempts: int
    text: str
    error: str | None
    metadata: Mapping[str, Any] = field(default_factory=dict)


def rating_to_100(rating: float) -> float:
    """CrossEval's 1-5 rating on its 1-100 scale: (r - 1) * 24.75 + 1."""
    return (rating - 1) * 24.75 + 1


def judge_params(max_tokens: int) -> GenerationParams:
    return GenerationParams(max_tokens=max_tokens, temperature=JUDGE_TEMPERATURE, seed=JUDGE_SEED)


@dataclass
class _Pending:
    """One judge conversation being retried: the messages so far and every text received."""

    item: JudgeItem
    order: str  # "AB" (as given) or "BA" (swapped), "" for single-answer recipes
    messages: tuple[Message, ...]
    texts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    result: ParsedVerdict | None = None
    call_error: str | None = None


def run_judge(
    judge: Model,
    recipe: JudgeRecipe,
    items: Sequence[JudgeItem],
    store: Store | None = None,
    progress: Any = None,
    n_references: int | None = None,
    max_parse_retries: int = 1,
    cache: CacheMode = "use",
    judge_empty: bool = False,
) -> list[Verdict]:
    """Judge every item with `recipe`, one Verdict per item, in order.

    Requests go through `capeval.engine.execute`, so judge calls are cached in `store` and a re-run
    pays nothing. An unparseable or out-of-range verdict is asked again up to `max_parse_retries`
    times with a reminder of the expected format appended (a different request, hence a different
    cache key); after that it is recorded as a failure (parsed=False, score=None), never guessed.
    Pairwise recipes judge both orders; an empty response is left unrated (CrossEval's authors'
    rule), or with `judge_empty` judged like any other (FastChat's MT-Bench sends every answer to
    the judge). `cache` is the engine's (--cache: use, refresh or off)."""
    from capeval.engine import execute

    verdicts: list[Verdict | None] = [None] * len(items)
    conversations: dict[int, list[_Pending]] = {}
    for i, item in enumerate(items):
        if not judge_empty and _is_empty(item, recipe.pairwise):
            verdicts[i] = _empty_verdict(item, recipe)
        elif recipe.pairwise:
            swapped = replace(
                item, response=item.response_b or "", response_b=item.response, history=item.history_b, history_b=item.history
            )
            conversations[i] = [
                _Pending(item, "AB", recipe.render(item, n_references)),
                _Pending(item, "BA", recipe.render(swapped, n_references)),
            ]
        else:
            conversations[i] = [_Pending(item, "", recipe.render(item, n_references))]

    todo = [p for group in conversations.values() for p in group]
    attempt = 0
    while todo and attempt <= max_parse_retries:
        requests = [
            Request(
                kind="generate",
                prompt=p.messages if attempt == 0 else _with_reminder(p, recipe),
                params=judge_params(recipe.max_tokens),
                repeat=attempt,
                task=f"judge:{recipe.name}",
                sample_id=f"{p.item.id}{'/' + p.order if p.order else ''}",
            )
            for p in todo
        ]
        responses, _ = execute(judge, requests, store, progress=progress, cache=cache)
        for p, resp in zip(todo, responses):
            _record(p, resp, recipe)
        # a failed call is not a parse problem: the backend already retried it
        todo = [p for p in todo if p.result is not None and not p.result.ok and p.call_error is None]
        attempt += 1

    for i, group in conversations.items():
        if recipe.pairwise:
            verdicts[i] = _pairwise_verdict(items[i], group, recipe, n_references)
        else:
            verdicts[i] = _single_verdict(items[i], group[0], recipe, n_references)
    return [v for v in verdicts if v is not None]


def _is_empty(item: JudgeItem, pairwise: bool) -> bool:
    if pairwise:
        return not (item.response or "").strip() and not (item.response_b or "").strip()
    return not (item.response or "").strip()


def _empty_verdict(item: JudgeItem, recipe: JudgeRecipe) -> Verdict:
    return Verdict(item.id, None, None, False, 0, "", EMPTY_RESPONSE, {"recipe": recipe.name, "unrated": True})


def _with_reminder(p: _Pending, recipe: JudgeRecipe) -> tuple[Message, ...]:
    reminder = recipe.reminder(p.errors[-1] if p.errors else "")
    last = p.messages[-1]
    return p.messages[:-1] + (Message(last.role, f"{last.content}\n\n{reminder}"),)


def _record(p: _Pending, resp: Response, recipe: JudgeRecipe) -> None:
    if resp.error is not None:
        p.call_error = f"{JUDGE_CALL_FAILED}: {resp.error}"
        p.texts.append("")
        p.result = ParsedVerdict(error=p.call_error)
        return
    text = resp.text or ""
    p.texts.append(text)
    p.result = parse_verdict(text, recipe.verdict, recipe.scale[0], recipe.scale[1])
    if not p.result.ok:
        p.errors.append(p.result.error or "")


def _base_meta(item: JudgeItem, recipe: JudgeRecipe, n_references: int | None) -> dict[str, Any]:
    shown = len(item.references) if n_references is None else min(n_references, len(item.references))
    return {
        "recipe": recipe.name,
        "scale": list(recipe.scale),
        "n_references": shown if recipe.uses_references else 0,
        "capability": item.capability,
    }


def _single_verdict(item: JudgeItem, p: _Pending, recipe: JudgeRecipe, n_references: int | None) -> Verdict:
    meta = _base_meta(item, recipe, n_references)
    meta["attempt_texts"] = list(p.texts)
    meta["parse_errors"] = list(p.errors)
    r = p.result or ParsedVerdict(error="no judge call was made")
    if r.note:
        meta["parse_note"] = r.note
    text = p.texts[-1] if p.texts else ""
    if recipe.verdict == "score_of_max":
        deductions = parse_deductions(text)
        if deductions:
            meta["deductions"] = deductions
            meta["max_minus_deductions"] = max(recipe.scale[0], recipe.scale[1] - sum(deductions))
    if not r.ok:
        return Verdict(item.id, None, None, False, len(p.texts), text, r.error, meta)
    return Verdict(item.id, r.score, None, True, len(p.texts), text, None, meta)


_SWAP = {"A": "B", "B": "A", "tie": "tie"}


def _pairwise_verdict(item: JudgeItem, group: list[_Pending], recipe: JudgeRecipe, n_references: int | None) -> Verdict:
    ab, ba = group
    meta = _base_meta(item, recipe, n_references)
    meta["texts"] = [ab.texts[-1] if ab.texts else "", ba.texts[-1] if ba.texts else ""]
    meta["attempt_texts"] = [list(ab.texts), list(ba.texts)]
    meta["parse_errors"] = [list(ab.errors), list(ba.errors)]
    text = f"[order A, B]\n{meta['texts'][0]}\n\n[order B, A (swapped)]\n{meta['texts'][1]}"
    attempts = max(len(ab.texts), len(ba.texts))
    failures = [f"{o}: {p.result.error}" for o, p in (("as given", ab), ("swapped", ba)) if p.result and not p.result.ok]
    if failures or ab.result is None or ba.result is None:
        return Verdict(item.id, None, None, False, attempts, text, "; ".join(failures) or "no judge call", meta)
    first = ab.result.winner or "tie"
    second = _SWAP[ba.result.winner or "tie"]  # back to the original labels
    meta["raw_winners"] = [ab.result.winner, ba.result.winner]
    meta["consistent"] = first == second
    winner = first if first == second else "tie"
    return Verdict(item.id, None, winner, True, attempts, text, None, meta)


@dataclass(frozen=True)
class VerdictSummary:
    """Counts a report shows next to any judge-based number."""

    n: int
    parsed: int
    failed: int
    empty: int
    retried: int
    call_failed: int

    @property
    def failure_rate(self) -> float:
        rated = self.n - self.empty
        return self.failed / rated if rated else 0.0


def summarize(verdicts: Sequence[Verdict]) -> VerdictSummary:
    empty = sum(1 for v in verdicts if v.error == EMPTY_RESPONSE)
    call_failed = sum(1 for v in verdicts if v.error and JUDGE_CALL_FAILED in v.error)
    return VerdictSummary(
        n=len(verdicts),
        parsed=sum(1 for v in verdicts if v.parsed),
        failed=sum(1 for v in verdicts if not v.parsed and v.error != EMPTY_RESPONSE),
        empty=empty,
        retried=sum(1 for v in verdicts if v.attempts > 1),
        call_failed=call_failed,
    )
