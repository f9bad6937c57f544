"""HellaSwag (Zellers et al. 2019): pick the likeliest ending, 0-shot, acc_norm, validation split."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from capeval.prompting import PromptLayout
from capeval.tasks._common import FewShotTask, choice_list, choice_rows, local_or
from capeval.tasks.registry import register_task
from capeval.tasks.sources import Source
from capeval.types import Sample

# HellaSwag is scored as raw continuation likelihood; the variants only add an instruction line.
HELLASWAG_VARIANTS = (
    PromptLayout(description="Complete the description with the most plausible ending."),
    PromptLayout(description="What happens next?"),
    PromptLayout(description="Continue the text in the most sensible way."),
)


def preprocess(text: str) -> str:
    """The standard HellaSwag clean-up: WikiHow's ' [title]' becomes '. ', other [tags] go."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag_row(row: Mapping[str, Any], index: int, task: Any) -> Sample:
    """Rowan/hellaswag row: ind, activity_label, ctx_a, ctx_b, endings (4), label ("0".."3")."""
    ctx = str(row["ctx_a"]) + " " + str(row["ctx_b"]).capitalize()
    endings = choice_rows(preprocess(str(e)) for e in choice_list(row["endings"]))
    label = row["label"]
    if label in (None, ""):
        raise ValueError("no label (the hub test split is unlabeled; use validation)")
    gold = int(label)
    if not 0 <= gold < len(endings):
        raise ValueError(f"label {gold} out of range")
    return Sample(
        id=str(row.get("ind", index)),
        task=task.name,
        fields={"question": preprocess(str(row["activity_label"]) + ": " + ctx)},
        target=gold,
        choices=endings,
        metadata={"source_id": row.get("source_id")},
    )


@register_task("hellaswag")
def hellaswag(data: str | None = None) -> FewShotTask:
    return FewShotTask(
        name="hellaswag",
        source=local_or(Source("hub", "Rowan/hellaswag"), data),
        split="validation",
        fewshot_split="train",
        shots=0,
        output_type="multiple_choice",
        choice_format="texts",
        variants=HELLASWAG_VARIANTS,
        metrics=("acc_norm", "acc"),
        capabilities=("Commonsense",),
        description="HellaSwag validation, 0-shot; acc_norm divides log-likelihood by ending length",
        row_to_sample_fn=hellaswag_row,
        question_fn=lambda s, t: str(s.fields["question"]),
    )
