"""GSM8K (Cobbe et al. 2021): grade-school math word problems, 8-shot chain of thought, numeric match."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from capeval.prompting import PromptLayout
from capeval.tasks._common import FewShotTask, lazy_scorer, local_or
from capeval.tasks.registry import register_task
from capeval.tasks.sources import Source
from capeval.types import GenerationParams, Sample

_CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations: "48/2 = <<48/2=24>>24"

GSM8K_LAYOUT = PromptLayout(answer_prefix="Answer:", extra={"question_label": "Question:"})
GSM8K_VARIANTS = (
    PromptLayout(
        description="Solve each math word problem. Reason step by step, then give the number.",
        answer_prefix="A:",
        extra={"question_label": "Q:"},
    ),
    PromptLayout(
        description="Work out the solution to the problem and state the final numeric answer.",
        answer_prefix="Solution:",
        extra={"question_label": "Problem:"},
    ),
    PromptLayout(answer_prefix="Step-by-step answer:", extra={"question_label": "Question:"}),
)


def split_answer(answer: str) -> tuple[str, str]:
    """(rationale without calculator annotations, final number) of a GSM8K answer "... #### 72"."""
    if "####" not in answer:
        raise ValueError("answer has no '#### N' line")
    rationale, final = answer.rsplit("####", 1)
    number = final.strip().replace(",", "")
    if not re.fullmatch(r"-?\d+(?:\.\d+)?", number):
        raise ValueError(f"final answer {final.strip()!r} is not a number")
    rationale = _CALCULATOR.sub("", rationale).strip()
    return " ".join(line.strip() for line in rationale.splitlines() if line.strip()), number


def gsm8k_row(row: Mapping[str, Any], index: int, task: Any) -> Sample:
    """openai/gsm8k row: question, answer (worked solution ending in '#### N')."""
    rationale, number = split_answer(str(row["answer"]))
    question = str(row["question"]).strip()
    if not question:
        raise ValueError("empty question")
    return Sample(
        id=str(index), task=task.name, fields={"question": question, "rationale": rationale}, target=number
    )


def gsm8k_question(sample: Sample, task: Any) -> str:
    return f"{task.layout.extra.get('question_label', 'Question:')} {sample.fields['question']}"


def gsm8k_answer(sample: Sample, task: Any, cot: bool) -> str:
    # Exemplars always show the worked solution: the benchmark's setting is chain of thought.
    return f"{sample.fields['rationale']} The answer is {sample.target}."


@register_task("gsm8k")
def gsm8k(data: str | None = None) -> FewShotTask:
    return FewShotTask(
        name="gsm8k",
        source=local_or(Source("hub", "openai/gsm8k", "main"), data),
        split="test",
        fewshot_split="train",
        shots=8,
        layout=GSM8K_LAYOUT,
        variants=GSM8K_VARIANTS,
        generation=GenerationParams(max_tokens=320, stop=("Question:", "\nQ:", "Problem:", "\n\n\n")),
        scorer=lazy_scorer("gsm8k_scorer"),
        metrics=("exact_match",),
        capabilities=("Math", "Reasoning"),
        description="GSM8K test, 8-shot chain of thought (train-split worked answers), numeric exact match",
        row_to_sample_fn=gsm8k_row,
        question_fn=gsm8k_question,
        answer_fn=gsm8k_answer,
        settings={"exemplars": "8 train items drawn with the prompt seed; calculator annotations removed"},
    )
