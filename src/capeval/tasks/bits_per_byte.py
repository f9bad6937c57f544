"""Language-modelling tasks scored in bits per byte: a text after a context (or after nothing),
and mtbench-bpb, MT-Bench's 80 first-turn questions as documents."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from capeval.prompting import PromptConfig, RenderedPrompt
from capeval.tasks._common import local_or
from capeval.tasks.base import Task
from capeval.tasks.registry import register_task
from capeval.tasks.sources import Source
from capeval.types import Sample


@dataclass
class TextPredictionTask(Task):
    """Each sample's `fields["context"]` as plain text (no chat template, no exemplars: the text is
    a document to predict, not a question to answer), then one log-likelihood request for its
    target text, scored as bits per byte (output type "loglikelihood")."""

    def render(self, sample: Sample, exemplars: Sequence[Sample], config: PromptConfig) -> RenderedPrompt:
        return RenderedPrompt(prompt=str(sample.fields.get("context", "")))


def mtbench_question_row(row: Mapping[str, Any], index: int, task: Any) -> Sample:
    """An MT-Bench question as a document: its first turn, after nothing, with its category."""
    text = str(row["turns"][0])
    if not text.strip():
        raise ValueError("empty first turn")
    category = str(row["category"])
    return Sample(
        id=f"mtbench-{row['question_id']}",
        task=task.name,
        fields={"context": "", "question_id": row["question_id"]},
        target=text,
        metadata={"category": category},
    )


@register_task("mtbench-bpb")
def mtbench_bpb(data: str | None = None) -> TextPredictionTask:
    """MT-Bench's 80 first-turn questions as documents: bits per byte of each, from its first byte
    (lower is better). `--sample` stratifies by category.

    Args:
        data: a local copy of MT-Bench's question.jsonl (question_id, category, turns).
    """
    return TextPredictionTask(
        name="mtbench-bpb",
        source=local_or(Source("packaged", "mtbench"), data),
        split="test",
        shots=0,
        output_type="loglikelihood",
        capabilities=("English",),
        metrics=("bits_per_byte",),
        description="MT-Bench's 80 first-turn questions as documents: bits per byte (lower is better)",
        row_to_sample_fn=mtbench_question_row,
        strata="category",
        settings={"scored": "each question's first turn as one document", "prompt": "nothing"},
    )
