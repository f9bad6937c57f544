"""IMPACT (INSTRUCTEVAL's writing set): 4 x 50 prompts, judged 1-5 for relevance and coherence.

Categories: informative, professional, argumentative and creative writing. As in the authors'
`subjective.py`, the model under test sees the category's definition followed by the prompt
(zero-shot, up to 1,024 new tokens); the judge rates relevance (the answer against the prompt) and
coherence (the answer alone) on their 1-5 Likert rubrics. The authors sampled at temperature 1.0;
capeval decodes greedily by default so that runs repeat exactly and are served from the cache.
A failed verdict is counted as unrated and left out of that metric's mean (the authors' script
turned it into a 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capeval.errors import CapevalError, DatasetError
from capeval.judge.breakdown import (
    BreakdownPrinter,
    BreakdownRow,
    breakdown_metrics,
    group_means,
    metadata_key,
)
from capeval.prompting import PromptConfig, RenderedPrompt
from capeval.scoring.base import ScoringContext
from capeval.scoring.extract import strip_reasoning
from capeval.tasks.base import Task
from capeval.tasks.registry import register_task
from capeval.tasks.sources import Source
from capeval.types import GenerationParams, Message, MetricResult, Response, Sample, Score

HUB_ID = "declare-lab/InstructEvalImpact"
CATEGORIES = ("informative", "professional", "argumentative", "creative")
# metric name -> judge recipe (capeval.judge recipes, each a template file)
WRITING_RECIPES = {"relevance": "writing_relevance", "coherence": "writing_coherence"}


def _field(row: Mapping[str, Any], name: str) -> str:
    """The hub file capitalises its columns (Category, Definition, Prompt); accept either case."""
    for key in (name, name.lower()):
        v = row.get(key)
        if v is not None and str(v).strip():
            return str(v).strip()
    raise KeyError(name)


def category_of(raw: str) -> str:
    """'Informative Writing' / 'informative' -> 'informative'."""
    word = raw.strip().split()[0].lower() if raw.strip() else ""
    if word not in CATEGORIES:
        raise ValueError(f"unknown IMPACT category {raw!r} (expected one of {', '.join(CATEGORIES)})")
    return word


def row_to_sample(row: Mapping[str, Any], index: int, task: Task) -> Sample:
    category = category_of(_field(row, "Category"))
    definition = row.get("Definition") or row.get("definition") or ""
    prompt = _field(row, "Prompt")
    return Sample(
        id=f"impact-{index:03d}",
        task=task.name,
        fields={"category": category, "definition": str(definition).strip(), "prompt": prompt},
        metadata={"category": category},
    )


@dataclass
class ImpactTask(Task):
    """Generation from definition + prompt, then two judge passes (relevance, coherence)."""


    def judge_recipe_names(self) -> tuple[str, ...]:
        return tuple(WRITING_RECIPES.values())

    def render(self, sample: Sample, exemplars: Sequence[Sample], config: PromptConfig) -> RenderedPrompt:
        text = " ".join(p for p in (sample.fields["definition"], sample.fields["prompt"]) if p)
        messages = [Message("system", config.system)] if config.system else []
        messages.append(Message("user", text))
        return RenderedPrompt(prompt=tuple(messages))

    def score_all(
        self, samples: Sequence[Sample], responses: Sequence[Sequence[Response]], ctx: ScoringContext
    ) -> list[Score]:
        return judge_writing(self, samples, responses, ctx)

    def group_metrics(self, scores: Sequence[Score]) -> list[MetricResult]:
        """Relevance and coherence per writing category."""
        return breakdown_metrics(self.name, impact_breakdown(scores), ("category",))


def judge_writing(
    task: Task, samples: Sequence[Sample], responses: Sequence[Sequence[Response]], ctx: ScoringContext
) -> list[Score]:
    answered = [i for i, r in enumerate(responses) if r and not r[0].error]
    verdicts: dict[str, list[Any]] = {}
    recipes: dict[str, Any] = {}
    if answered:
        if ctx.judge is None:
            raise CapevalError(
                f"{task.name} is scored by an LLM judge, and no judge model was given",
                "pass --judge MODEL (the authors used ChatGPT; any capeval model spec works); "
                "the answers generated so far are cached, so the re-run only pays for the judge",
            )
        from capeval.judge import JudgeItem, run_judge
        from capeval.judge.recipes import pick_recipe

        items = [
            JudgeItem(
                id=samples[i].id,
                prompt=str(samples[i].fields["prompt"]),
                response=strip_reasoning(responses[i][0].text or ""),
                metadata=dict(samples[i].metadata),
            )
            for i in answered
        ]
        for metric, recipe in WRITING_RECIPES.items():
            recipes[metric] = pick_recipe(recipe, task.recipe_replacements)
            verdicts[metric] = run_judge(
                ctx.judge, recipes[metric], items, store=ctx.store, progress=ctx.progress, cache=ctx.cache
            )
    from capeval.judge.authors import audit_metadata

    out: list[Score] = []
    position = {i: k for k, i in enumerate(answered)}
    for i, s in enumerate(samples):
        if i not in position:
            err = responses[i][0].error if responses[i] else "no response"
            out.append(Score(s.id, s.task, {}, parsed=False, metadata={**s.metadata, "unrated": True, "error": f"model call failed: {err}"}))
            continue
        values: dict[str, float] = {}
        meta: dict[str, Any] = dict(s.metadata)
        errors = []
        for metric in WRITING_RECIPES:
            v = verdicts[metric][position[i]]
            meta[f"{metric}_verdict"] = v.text
            meta.update(audit_metadata(recipes[metric], v, prefix=f"{metric}_"))
            if v.score is None:
                errors.append(f"{metric}: {v.error or 'unparseable verdict'}")
            else:
                values[metric] = float(v.score)
        if errors:
            meta["unrated"] = True
            meta["error"] = "; ".join(errors)
        out.append(Score(s.id, s.task, values, extracted=None, parsed=not errors, metadata=meta))
    return out


def impact_breakdown(scores: Sequence[Score]) -> list[BreakdownRow]:
    """Relevance and coherence (1-5) overall and per writing category, as the authors' table."""
    rows: list[BreakdownRow] = []
    for metric in WRITING_RECIPES:
        rows += group_means(scores, metric, "overall", lambda s: "all")
        rows += group_means(scores, metric, "category", metadata_key("category"), order=CATEGORIES)
    return rows


@register_task("impact")
def impact(data: str | None = None) -> Task:
    """IMPACT from the hub (declare-lab/InstructEvalImpact, data.jsonl = split train) or a local copy."""
    if data is not None and not Path(data).exists():
        raise DatasetError(f"IMPACT data not found: {data}", "give data.jsonl (Category, Definition, Prompt) or its folder")
    source = Source("hub", HUB_ID) if data is None else Source("local", data)
    # the hub repo holds one data.jsonl (served as split "train"); a local folder may hold either name
    split = "train"
    if data is not None and Path(data).is_dir() and any(Path(data).glob("data.*")):
        split = "data"
    return ImpactTask(
        name="impact",
        source=source,
        split=split,
        output_type="generate",
        capabilities=("English",),
        generation=GenerationParams(max_tokens=1024),
        metrics=tuple(WRITING_RECIPES),
        description="INSTRUCTEVAL IMPACT writing: 200 prompts, judge rates relevance and coherence 1-5",
        row_to_sample_fn=row_to_sample,
        strata="category",
        judged_by="writing_relevance + writing_coherence (1-5)",
        breakdown=BreakdownPrinter("impact", impact_breakdown),
    )
