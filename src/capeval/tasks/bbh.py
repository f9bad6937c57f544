"""BIG-Bench Hard (Suzgun et al. 2022): 27 hard BIG-bench tasks, 3-shot, exact match per subtask.

The hub copy (lukaemon/bbh) has only `input` and `target`, no hand-written chain-of-thought
rationales and no few-shot split. As INSTRUCTEVAL ran it, the first 3 items of each subtask are the
exemplars (answer only) and are left out of the evaluation; the headline number is the mean over
subtasks (`exact_match_macro`). For chain of thought, pass a local copy whose rows also carry a
`rationale` field (the exemplars then show it before "So the answer is ...") together with --cot,
or run 0-shot with --shots 0 --cot (the "Let's think step by step." trigger).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from capeval.prompting import PromptLayout
from capeval.tasks._common import SUBJECT_KEY, SubjectTask, lazy_scorer, local_or
from capeval.tasks.registry import register_subject_tasks, register_task
from capeval.tasks.sources import Source
from capeval.types import GenerationParams, Sample

BBH_SUBTASKS = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa", "dyck_languages",
    "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
    "logical_deduction_seven_objects", "logical_deduction_three_objects", "movie_recommendation",
    "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
    "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
    "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects", "web_of_lies",
    "word_sorting",
)  # fmt: skip

BBH_LAYOUT = PromptLayout(answer_prefix="Answer:")  # INSTRUCTEVAL's format: "<input>\nAnswer: <target>"
BBH_VARIANTS = (
    PromptLayout(description="Answer the question. Give only the final answer.", answer_prefix="Answer:"),
    PromptLayout(
        description="Solve each puzzle and reply with the answer alone.", answer_prefix="The answer is"
    ),
    PromptLayout(answer_prefix="Final answer:"),
)


def bbh_row(row: Mapping[str, Any], index: int, task: Any) -> Sample:
    """lukaemon/bbh row: input, target (optionally rationale in a local copy)."""
    text = str(row["input"]).strip()
    target = str(row["target"]).strip()
    if not text or not target:
        raise ValueError("empty input or target")
    subject = row.get(SUBJECT_KEY, "")
    fields = {"question": text}
    if row.get("rationale"):
        fields["rationale"] = str(row["rationale"]).strip()
    return Sample(
        id=f"{subject}/{index}", task=task.name, fields=fields, target=target, metadata={"subject": subject}
    )


def bbh_answer(sample: Sample, task: Any, cot: bool) -> str:
    rationale = sample.fields.get("rationale")
    if cot and rationale:
        return f"{rationale} So the answer is {sample.target}."
    return str(sample.target)


def _bbh(name: str, subjects: tuple[str, ...], data: str | None) -> SubjectTask:
    return SubjectTask(
        name=name,
        source=local_or(Source("hub", "lukaemon/bbh", subjects[0] if len(subjects) == 1 else None), data),
        split="test",
        fewshot_split="test",
        shots=3,
        layout=BBH_LAYOUT,
        variants=BBH_VARIANTS,
        generation=GenerationParams(max_tokens=32, stop=("\n\n", "Question:")),
        scorer=lazy_scorer("bbh_scorer"),
        metrics=("exact_match", "exact_match_macro") if len(subjects) > 1 else ("exact_match",),
        capabilities=("Reasoning",),
        description=f"BBH {subjects[0]}"
        if len(subjects) == 1
        else "BBH, 27 subtasks, 3-shot (first 3 items held out); macro mean over subtasks",
        row_to_sample_fn=bbh_row,
        answer_fn=bbh_answer,
        subjects=subjects,
        benchmark_subjects=BBH_SUBTASKS,
        sampler="first_n",
        holdout_first=3,
        settings={
            "exemplars": "first 3 items of each subtask, not evaluated (as INSTRUCTEVAL)",
            "chain of thought": "rows with a `rationale` field and --cot; the hub copy has none",
        },
    )


@register_task("bbh")
def bbh(data: str | None = None) -> SubjectTask:
    return _bbh("bbh", BBH_SUBTASKS, data)


register_subject_tasks("bbh", BBH_SUBTASKS, _bbh)
