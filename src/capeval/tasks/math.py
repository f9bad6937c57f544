"""MATH (Hendrycks et al. 2021): competition problems in 7 subjects, 4-shot, \\boxed{} answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from capeval.prompting import PromptLayout
from capeval.tasks._common import SUBJECT_KEY, SubjectTask, lazy_scorer, local_or
from capeval.tasks.registry import register_subject_tasks, register_task
from capeval.tasks.sources import Source
from capeval.types import GenerationParams, Sample

# EleutherAI/hendrycks_math (one config per subject): the original hendrycks/competition_math was
# taken off the hub; a local copy of it (one file, a `type` field per row) loads too.
MATH_SUBJECTS = (
    "algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory", "prealgebra",
    "precalculus",
)  # fmt: skip

MATH_LAYOUT = PromptLayout(
    description="Solve each problem. Put the final answer in \\boxed{}.",
    answer_prefix="Solution:",
    extra={"question_label": "Problem:"},
)
MATH_VARIANTS = (
    PromptLayout(
        description="Work through the competition problem step by step; write the result as \\boxed{answer}.",
        answer_prefix="Answer:",
        extra={"question_label": "Question:"},
    ),
    PromptLayout(
        description="Give a worked solution and box the final answer with \\boxed{}.",
        answer_prefix="Worked solution:",
        extra={"question_label": "Problem:"},
    ),
    PromptLayout(answer_prefix="Solution:", extra={"question_label": "Exercise:"}),
)


def math_subject(kind: str) -> str:
    """A row's `type` as the config name: "Counting & Probability" -> "counting_and_probability"."""
    return kind.strip().lower().replace(" & ", "_and_").replace(" ", "_")


def math_row(row: Mapping[str, Any], index: int, task: Any) -> Sample:
    """hendrycks_math row: problem, level, type, solution (the answer is its last \\boxed{})."""
    from capeval.scoring.extract import extract_boxed

    solution = str(row["solution"]).strip()
    answer = extract_boxed(solution)
    if not answer:
        raise ValueError("solution has no \\boxed{} answer")
    subject = row.get(SUBJECT_KEY, "")
    return Sample(
        id=f"{subject}/{index}",
        task=task.name,
        fields={"question": str(row["problem"]).strip(), "solution": solution},
        target=answer,
        metadata={"subject": subject, "level": row.get("level")},
    )


def math_question(sample: Sample, task: Any) -> str:
    return f"{task.layout.extra.get('question_label', 'Problem:')}\n{sample.fields['question']}\n"


def math_answer(sample: Sample, task: Any, cot: bool) -> str:
    return str(sample.fields["solution"])


def _math(name: str, subjects: tuple[str, ...], data: str | None) -> SubjectTask:
    return SubjectTask(
        name=name,
        source=local_or(
            Source("hub", "EleutherAI/hendrycks_math", subjects[0] if len(subjects) == 1 else None), data
        ),
        split="test",
        fewshot_split="train",
        shots=4,
        layout=MATH_LAYOUT,
        variants=MATH_VARIANTS,
        generation=GenerationParams(max_tokens=512, stop=("Problem:", "Question:", "Exercise:", "\n\n\n")),
        scorer=lazy_scorer("math_scorer"),
        metrics=("equiv", "equiv_macro") if len(subjects) > 1 else ("equiv",),
        capabilities=("Math", "Reasoning"),
        description=f"MATH {subjects[0]}"
        if len(subjects) == 1
        else "MATH, 7 subjects, 4-shot worked solutions; \\boxed{} answer, equivalence",
        row_to_sample_fn=math_row,
        question_fn=math_question,
        answer_fn=math_answer,
        subjects=subjects,
        benchmark_subjects=MATH_SUBJECTS,
        subject_field="type",  # one file of every subject (hendrycks/competition_math's layout)
        subject_of=math_subject,
        sampler="seeded",
        settings={"exemplars": "4 train solutions of the same subject, drawn with the prompt seed"},
    )


@register_task("math")
def math_all(data: str | None = None) -> SubjectTask:
    return _math("math", MATH_SUBJECTS, data)


register_subject_tasks("math", MATH_SUBJECTS, _math)
