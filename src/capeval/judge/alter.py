"""The capability alteration study (CrossEval, arXiv 2409.19951, section 6), end to end.

1. Split the prompts of capability C (those the model can attempt) into a development part and a
   held-out part (seeded).
2. Answer the development prompts without principles and have the judge rate them.
3. Rounds: the writer (the judge unless told otherwise) reads `per_round` judged answers, one at a
   time, and updates the principle list; the model answers the development prompts again with the
   list as its system prompt; the list is kept only if the development score of C rises by more
   than `min_gain` points (paired over the prompts rated both times), else the round is undone.
   The next round learns from the answers given under the list kept so far.
4. Evaluate every capability (C's held-out prompts, all prompts of the others) without and with
   the kept list: two ordinary runs in the store.
5. `analysis.alteration.alteration_effect`: per capability change with a CI, and for every cross
   capability involving C whether its change follows its weaker part's.

Every model, judge and writer call goes through the engine and is cached, so a stopped study
resumes for free; the two final runs can be compared, reported and exported like any other run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from capeval.analysis.alteration import AlterationEffect, alteration_effect
from capeval.analysis.stats import compare_paired
from capeval.analysis.weakest_link import DEFAULT_THRESHOLD, cross_parts
from capeval.errors import CapevalError
from capeval.judge.principles import Lesson, PrincipleTemplate, Update, update_principles
from capeval.prompting import PromptConfig
from capeval.scoring.base import ScoringContext
from capeval.scoring.extract import strip_reasoning
from capeval.tasks.base import Task
from capeval.types import Sample, Score

if TYPE_CHECKING:
    from capeval.engine import CacheMode
    from capeval.models.base import Model
    from capeval.store import Store

MIN_ITEMS = 4  # C needs a development part (>= 2 rated answers to compare) and a held-out part


@dataclass(frozen=True)
class StudyConfig:
    """Settings of one study. `rounds` None: one pass over the development prompts."""

    capability: str
    dev_fraction: float = 0.5
    per_round: int = 5
    rounds: int | None = None
    min_gain: float = 0.0
    seed: int = 0
    limit_per_capability: int | None = None
    max_principles: int = 10
    base_system: str | None = None
    threshold: float = DEFAULT_THRESHOLD
    min_change: float = 1.0


@dataclass
class DevScore:
    """The development prompts' ratings (1-100) under one system prompt, by sample id."""

    scores: dict[str, float]
    lessons: dict[str, Lesson]
    n_unrated: int

    @property
    def mean(self) -> float:
        return sum(self.scores.values()) / len(self.scores) if self.scores else math.nan


@dataclass
class Round:
    index: int
    lesson_ids: list[str]
    updates: list[Update]
    candidate: str
    accepted: bool
    reason: str
    n_paired: int = 0
    dev_before: float | None = None
    dev_after: float | None = None
    gain: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass
class StudyResult:
    capability: str
    config: StudyConfig
    dev_ids: list[str]
    heldout_ids: list[str]
    baseline_dev: float
    rounds: list[Round] = field(default_factory=list)
    principles: str = ""
    system_prompt: str | None = None
    baseline_run: str | None = None
    altered_run: str | None = None
    effect: AlterationEffect | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def kept_rounds(self) -> int:
        return sum(1 for r in self.rounds if r.accepted)


def split_items(samples: Sequence[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(development, held-out): a seeded shuffle cut at round(fraction * n), each part >= 2 items
    and the held-out part >= 1 (C needs at least MIN_ITEMS prompts)."""
    if not 0 < fraction < 1:
        raise CapevalError(f"--dev-fraction must be between 0 and 1, not {fraction}")
    order = list(samples)
    random.Random(seed).shuffle(order)
    n_dev = min(max(2, round(fraction * len(order))), len(order) - 1)
    return order[:n_dev], order[n_dev:]


def supported_by_capability(task: Task) -> dict[str, list[Sample]]:
    loaded = task.load()
    out: dict[str, list[Sample]] = {}
    for s in loaded.samples:
        if not s.fields.get("unsupported"):
            out.setdefault(str(s.metadata.get("capability", task.name)), []).append(s)
    return out


def score_dev(
    model: Model, judge: Model, task: Task, samples: Sequence[Sample], system: str | None,
    store: Store | None, progress: bool = False, cache: CacheMode = "use",
) -> DevScore:
    """Answer and judge the development prompts under `system`; 1-100 scores and the lessons."""
    from capeval.engine import Progress, execute

    config = PromptConfig(system=system)
    requests = [task.requests(s, task.render(s, [], config), config) for s in samples]
    flat = [r for rs in requests for r in rs]
    with Progress(progress) as bar:
        responses, _ = execute(model, flat, store, progress=bar, cache=cache)
        per_sample, pos = [], 0
        for rs in requests:
            per_sample.append(responses[pos : pos + len(rs)])
            pos += len(rs)
        scores: list[Score] = task.score_all(samples, per_sample, ScoringContext(judge=judge, store=store, progress=bar, cache=cache))
    by_id = {s.id: s for s in samples}
    answer = {s.id: strip_reasoning(r[0].text or "") if r else "" for s, r in zip(samples, per_sample)}
    out = DevScore({}, {}, 0)
    for sc in scores:
        value = sc.values.get("score_100")
        if value is None:
            out.n_unrated += 1
            continue
        s = by_id[sc.sample_id]
        out.scores[sc.sample_id] = float(value)
        out.lessons[sc.sample_id] = Lesson(
            id=s.id,
            capability=str(s.metadata.get("capability", "")),
            prompt=str(s.fields.get("prompt", "")),
            response=answer[s.id],
            evaluation=str(sc.metadata.get("verdict", "")),
            rating=sc.values.get("rating"),
            attached=s.fields.get("attached_text"),
        )
    return out


def run_study(
    model: Model,
    judge: Model,
    task: Task,
    config: StudyConfig,
    store: Store,
    writer: Model | None = None,
    template: PrincipleTemplate | None = None,
    model_spec: str | None = None,
    progress: bool = False,
    log: Callable[[str], None] = lambda s: None,
    extra_config: dict[str, Any] | None = None,
    cache: CacheMode = "use",
) -> StudyResult:
    """Build principles for `config.capability`, then evaluate all capabilities without and with them.
    `cache`: the engine's --cache mode, for every call of the study."""
    from capeval.engine import evaluate_tasks

    cap = config.capability
    if cross_parts(cap):
        raise CapevalError(f"'{cap}' is a cross capability", "alter an individual capability (e.g. Reasoning); its cross capabilities are measured")
    if config.per_round < 1:
        raise CapevalError("--per-round must be at least 1")
    writer = writer or judge
    template = template or PrincipleTemplate.load()
    pools = supported_by_capability(task)
    if config.limit_per_capability is not None:
        rng = random.Random(config.seed)
        pools = {c: (rng.sample(v, config.limit_per_capability) if len(v) > config.limit_per_capability else v) for c, v in pools.items()}
    if cap not in pools:
        individual = sorted(c for c in pools if not cross_parts(c))
        raise CapevalError(
            f"no prompt of capability '{cap}' that this model can attempt",
            f"capabilities with supported prompts: {', '.join(individual) or 'none'}",
        )
    if len(pools[cap]) < MIN_ITEMS:
        raise CapevalError(
            f"capability '{cap}' has {len(pools[cap])} usable prompts; the study needs at least {MIN_ITEMS}",
            "a development part to build and select principles on, and a held-out part to measure",
        )
    dev, heldout = split_items(pools[cap], config.dev_fraction, config.seed)
    result = StudyResult(cap, config, [s.id for s in dev], [s.id for s in heldout], math.nan)
    if not any(cap in (cross_parts(c) or ()) for c in pools):
        result.notes.append(f"no cross capability involving {cap} has prompts this model can attempt")

    current_system = config.base_system
    current = score_dev(model, judge, task, dev, current_system, store, progress, cache)
    result.baseline_dev = current.mean
    log(f"development: {len(dev)} prompts of {cap}, {len(current.scores)} rated, mean {current.mean:.2f} without principles")
    if len(current.scores) < 2:
        raise CapevalError(
            f"the judge rated {len(current.scores)} of {len(dev)} development answers",
            "a judge that follows the rating format is needed (the unrated count is in the run's samples)",
        )
    principles = ""
    n_rounds = config.rounds if config.rounds is not None else math.ceil(len(dev) / config.per_round)
    order = [s.id for s in dev]
    seen = 0
    for r in range(1, n_rounds + 1):
        # the next per_round development prompts (cycling), as answered under the list kept so far
        ids = [order[(seen + j) % len(order)] for j in range(min(config.per_round, len(order)))]
        seen += len(ids)
        lessons = [current.lessons[i] for i in ids if i in current.lessons]
        if not lessons:
            result.rounds.append(Round(r, ids, [], principles, False, "no rated answer to learn from"))
            continue
        candidate, updates = update_principles(
            writer, lessons, principles, store=store, template=template, max_principles=config.max_principles,
            start_index=seen - len(ids) + 1, total=max(len(order), seen), cache=cache,
        )
        rnd = Round(r, [le.id for le in lessons], updates, candidate, False, "")
        result.rounds.append(rnd)
        if candidate.strip() == principles.strip():
            rnd.reason = "list unchanged" if any(u.parsed for u in updates) else "no writer answer could be read"
            log(f"round {r}: {rnd.reason}")
            continue
        system = _join(config.base_system, template.system_prompt(cap, candidate))
        trial = score_dev(model, judge, task, dev, system, store, progress, cache)
        common = [i for i in current.scores if i in trial.scores]
        rnd.n_paired = len(common)
        if len(common) < 2:
            rnd.reason = f"only {len(common)} development prompts rated both times"
            log(f"round {r}: {rnd.reason}; not kept")
            continue
        c = compare_paired(trial.scores, current.scores, test="bootstrap", n_resamples=2000, seed=config.seed)
        gain = c.diff
        rnd.dev_before, rnd.dev_after = c.mean_b, c.mean_a
        rnd.gain, rnd.ci_low, rnd.ci_high = gain, c.ci_low, c.ci_high
        rnd.accepted = gain > config.min_gain
        rnd.reason = f"development {rnd.dev_before:.2f} -> {rnd.dev_after:.2f} ({gain:+.2f} on {len(common)} prompts)"
        log(f"round {r}: {rnd.reason}; {'kept' if rnd.accepted else 'undone'}")
        if rnd.accepted:
            principles, current, current_system = candidate, trial, system

    result.principles = principles
    if not principles:
        result.notes.append(f"no round raised the development score of {cap}: nothing to evaluate with")
        return result
    result.system_prompt = current_system
    dev_set = set(result.dev_ids)
    eval_ids = frozenset(s.id for c, v in pools.items() for s in v if not (c == cap and s.id in dev_set))
    eval_task = replace(task, only_ids=eval_ids)
    study = {"capability": cap, "dev_ids": result.dev_ids, "seed": config.seed, **(extra_config or {})}
    runs = []
    for condition, condition_system in (("baseline", config.base_system), ("altered", current_system)):
        log(f"evaluating all capabilities ({len(eval_ids)} prompts), {condition}")
        res = evaluate_tasks(
            model, [eval_task], PromptConfig(system=condition_system), store=store, model_spec=model_spec,
            progress=progress, judge=judge, extra_config={"alter": {**study, "condition": condition}}, cache=cache,
        )
        runs.append(res.run_id)
    result.baseline_run, result.altered_run = runs
    result.effect = effect_of_runs(store, runs[0], runs[1], cap, config.threshold, config.min_change, config.seed)
    return result


def effect_of_runs(
    store: Store, before_run: str, after_run: str, capability: str, threshold: float, min_change: float, seed: int = 0
) -> AlterationEffect:
    from capeval.analysis import tables

    before = tables.capability_items(tables.load_run_scores(store, before_run))
    after = tables.capability_items(tables.load_run_scores(store, after_run))
    return alteration_effect(before, after, capability, threshold=threshold, min_change=min_change, seed=seed)


def _join(base: str | None, principles_prompt: str) -> str:
    return f"{base.strip()}\n\n{principles_prompt}" if base and base.strip() else principles_prompt
