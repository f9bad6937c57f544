"""CrossEval (Zhong et al. 2024): 14 individual and cross capabilities, judged against rated references.

Each prompt comes with 3 reference responses, each rated 1-5 by two people with explanations. The
model under test answers the prompt (one chat turn); an LLM judge then rates the answer 1-5 with
CrossEval's multi-reference recipe, seeing all 3 references with their ratings and explanations.
Ratings map to 1-100 by (r - 1) * 24.75 + 1; a capability's score is the mean over its rated prompts.

What a text-only model cannot attempt is reported as unsupported, not scored (the authors leave such
responses unrated too): prompts that need images (Image Recognition, or an attached image), tools
(Tool Use: web browsing or a code interpreter; capeval's backends run no tool loop), or an attached
file with no local copy. Long Context prompts put the attached text before the prompt, as the
authors do; the hub rows hold a URL, so offline the file must be saved next to the data:
`<data>/attachments/<file name from the URL>` (or the path in $CAPEVAL_CROSSEVAL_FILES).

An empty answer is left unrated, as in the authors' evaluator, and a verdict without a readable
"Score: X/5" after one retry is recorded as a failure; both count in the unparsed rate and are left
out of the means (a made-up 0 or 1 would move the capability scores).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from capeval.crosseval.attachments import support, user_prompt
from capeval.crosseval.references import blank_cell, read_references
from capeval.crosseval.taxonomy import CROSS_CAPABILITIES, DIFFICULTIES, INDIVIDUAL_CAPABILITIES, is_cross
from capeval.errors import CapevalError, DatasetError
from capeval.judge.breakdown import (
    BreakdownPrinter,
    BreakdownRow,
    breakdown_metrics,
    group_means,
    metadata_key,
)
from capeval.judge.core import rating_to_100
from capeval.prompting import PromptConfig, RenderedPrompt
from capeval.scoring.base import ScoringContext
from capeval.scoring.extract import strip_reasoning
from capeval.tasks.base import Task
from capeval.tasks.registry import register_task
from capeval.tasks.sources import Source
from capeval.types import GenerationParams, Message, MetricResult, Request, Response, Sample, Score

HUB_ID = "MingZhong/crosseval"


def _row_to_sample(data_root: Path | None) -> Callable[[Mapping[str, Any], int, Task], Sample]:
    def convert(row: Mapping[str, Any], index: int, task: Task) -> Sample:
        for name in ("prompt_id", "capability", "prompt"):
            if blank_cell(row.get(name)):
                raise KeyError(name)
        capability = str(row["capability"]).strip()
        attached = "" if blank_cell(row.get("attached_file")) else str(row["attached_file"]).strip()
        reason, attached_text = support(capability, attached, data_root)
        difficulty = "" if blank_cell(row.get("difficulty")) else str(row["difficulty"]).strip().lower()
        meta = {
            "capability": capability,
            "type": "cross" if is_cross(capability) else "individual",
            "l1_category": "" if blank_cell(row.get("l1_category")) else str(row["l1_category"]).strip(),
            "l2_category": "" if blank_cell(row.get("l2_category")) else str(row["l2_category"]).strip(),
            "difficulty": difficulty,
        }
        return Sample(
            id=str(row["prompt_id"]),
            task=task.name,
            fields={
                "prompt": str(row["prompt"]),
                "user_prompt": user_prompt(str(row["prompt"]), attached_text),
                "attached_file": attached,
                "attached_text": attached_text,
                "references": read_references(row),
                "unsupported": reason,
            },
            metadata=meta,
        )

    return convert


@dataclass
class CrossEvalTask(Task):
    """CrossEval: chat generation, then a multi-reference judge pass in `score_all`.

    Attributes:
        recipe: the judge recipe ("crosseval": multi-reference point deduction, as the authors).
        n_references: how many of the 3 references the judge sees (None: all, as the authors do
            for new model responses).
        judge_max_tokens: the judge's output budget (None: the recipe's own).
    """

    recipe: str = "crosseval"
    n_references: int | None = None
    judge_max_tokens: int | None = None
    data_root: Path | None = field(default=None, repr=False)

    def render(self, sample: Sample, exemplars: Sequence[Sample], config: PromptConfig) -> RenderedPrompt:
        # CrossEval is a chat benchmark: one user turn, whatever --chat says
        messages = []
        if config.system:
            messages.append(Message("system", config.system))
        messages.append(Message("user", str(sample.fields["user_prompt"])))
        return RenderedPrompt(prompt=tuple(messages))

    def requests(self, sample: Sample, rendered: RenderedPrompt, config: PromptConfig) -> list[Request]:
        if sample.fields.get("unsupported"):
            return []  # never paid for: the sample is reported as unsupported
        return super().requests(sample, rendered, config)

    def judge_recipe_names(self) -> tuple[str, ...]:
        return (self.recipe,)

    def score_all(
        self, samples: Sequence[Sample], responses: Sequence[Sequence[Response]], ctx: ScoringContext
    ) -> list[Score]:
        return judge_samples(self, samples, responses, ctx)

    def group_metrics(self, scores: Sequence[Score]) -> list[MetricResult]:
        """Individual vs cross, per capability and per difficulty, on the 1-100 scale (the L1/L2
        categories, which are many, are in the printed breakdown)."""
        return breakdown_metrics(self.name, crosseval_breakdown(scores), ("type", "capability", "difficulty"))


def judge_samples(
    task: CrossEvalTask, samples: Sequence[Sample], responses: Sequence[Sequence[Response]], ctx: ScoringContext
) -> list[Score]:
    """Rate every supported sample's answer with the judge; failures are counted, never scored."""
    scores: list[Score | None] = [None] * len(samples)
    pending: list[tuple[int, Any]] = []
    for i, (s, resps) in enumerate(zip(samples, responses)):
        meta = dict(s.metadata)
        if s.fields.get("unsupported"):
            scores[i] = Score(s.id, s.task, {}, parsed=False, metadata={**meta, "unsupported": True, "reason": s.fields["unsupported"]})
        elif not resps or resps[0].error:
            err = resps[0].error if resps else "no response"
            scores[i] = Score(s.id, s.task, {}, parsed=False, metadata={**meta, "unrated": True, "error": f"model call failed: {err}"})
        else:
            pending.append((i, strip_reasoning(resps[0].text or "")))
    if pending:
        if ctx.judge is None:
            raise CapevalError(
                f"{task.name} is scored by an LLM judge, and no judge model was given",
                "pass --judge MODEL (e.g. --judge openai:gpt-4o, or openai:NAME@URL for a served judge); "
                "the answers generated so far are cached, so the re-run only pays for the judge",
            )
        from capeval.judge import JudgeItem, Reference, run_judge
        from capeval.judge.recipes import pick_recipe

        items = []
        for i, text in pending:
            s = samples[i]
            refs = tuple(
                Reference(r.response, r.ratings, r.explanations) for r in s.fields["references"]
            )
            items.append(
                JudgeItem(
                    id=s.id,
                    prompt=str(s.fields["prompt"]),
                    response=text,
                    references=refs,
                    capability=str(s.metadata["capability"]),
                    attached=s.fields.get("attached_text"),
                    metadata=dict(s.metadata),
                )
            )
        recipe = pick_recipe(task.recipe, task.recipe_replacements)
        if task.judge_max_tokens is not None:
            recipe = replace(recipe, max_tokens=task.judge_max_tokens)
        verdicts = run_judge(
            ctx.judge,
            recipe,
            items,
            store=ctx.store,
            progress=ctx.progress,
            n_references=task.n_references,
            cache=ctx.cache,
        )
        from capeval.judge.authors import audit_metadata

        for (i, _), v in zip(pending, verdicts):
            s = samples[i]
            audit = {"verdict": v.text, "judge_attempts": v.attempts, **audit_metadata(recipe, v)}
            if v.score is None:
                scores[i] = Score(
                    s.id, s.task, {}, parsed=False,
                    metadata={**s.metadata, **audit, "unrated": True, "error": v.error or "unparseable verdict"},
                )
            else:
                r = float(v.score)
                scores[i] = Score(
                    s.id, s.task, {"score_100": rating_to_100(r), "rating": r}, extracted=f"{r:g}/5",
                    metadata={**s.metadata, **audit},
                )
    return [sc for sc in scores if sc is not None]


def crosseval_breakdown(scores: Sequence[Score]) -> list[BreakdownRow]:
    """CrossEval's report on the 1-100 scale: overall, individual vs cross, per capability, per
    L1 and L2 category, per difficulty."""
    metric = "score_100"
    rows = group_means(scores, metric, "overall", lambda s: "all")
    rows += group_means(scores, metric, "type", metadata_key("type"), order=("individual", "cross"))
    rows += group_means(
        scores, metric, "capability", metadata_key("capability"), order=INDIVIDUAL_CAPABILITIES + CROSS_CAPABILITIES
    )
    rows += group_means(scores, metric, "l1", metadata_key("l1_category"))
    rows += group_means(scores, metric, "l2", metadata_key("l2_category"))
    rows += group_means(scores, metric, "difficulty", metadata_key("difficulty"), order=DIFFICULTIES)
    return rows


@register_task("crosseval")
def crosseval(data: str | None = None) -> Task:
    """CrossEval from the hub (MingZhong/crosseval, split test) or a local copy in the same format."""
    if data is not None and not Path(data).exists():
        raise DatasetError(f"CrossEval data not found: {data}", "give the folder holding test.csv or the file itself")
    root = None if data is None else (Path(data) if Path(data).is_dir() else Path(data).parent)
    source = Source("hub", HUB_ID) if data is None else Source("local", data)
    return CrossEvalTask(
        name="crosseval",
        source=source,
        split="test",
        output_type="generate",
        capabilities=INDIVIDUAL_CAPABILITIES,
        generation=GenerationParams(max_tokens=2048),
        metrics=("score_100", "rating"),
        description="CrossEval: 1,400 prompts over 7 individual + 7 cross capabilities, LLM-judged 1-100",
        row_to_sample_fn=_row_to_sample(root),
        strata="capability",
        judged_by="crosseval (multi-reference, 3 refs)",
        breakdown=BreakdownPrinter("crosseval", crosseval_breakdown),
        data_root=root,
    )
