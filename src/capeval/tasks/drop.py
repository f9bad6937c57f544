"""DROP (Dua et al. 2019): discrete reasoning over paragraphs, 3-shot, EM and F1 (validation split)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from capeval.prompting import PromptLayout
from capeval.tasks._common import FewShotTask, lazy_scorer, local_or
from capeval.tasks.base import LoadedSamples
from capeval.tasks.registry import register_task
from capeval.tasks.sources import Source
from capeval.types import GenerationParams, Sample

DROP_LAYOUT = PromptLayout(answer_prefix="Answer:")  # INSTRUCTEVAL: "<passage> <question>\nAnswer: <answer>"
DROP_VARIANTS = (
    PromptLayout(
        description="Read the passage and answer the question with a short span or number.",
        answer_prefix="Answer:",
    ),
    PromptLayout(
        description="Answer each question about the paragraph as briefly as possible.",
        answer_prefix="Short answer:",
    ),
    PromptLayout(answer_prefix="A:"),
)


def drop_row(row: Mapping[str, Any], index: int, task: Any) -> Sample:
    """ucinlp/drop row: section_id, query_id, passage, question, answers_spans {spans, types}."""
    spans = [str(s).strip() for s in row["answers_spans"]["spans"] if str(s).strip()]
    if not spans:
        raise ValueError("no answer spans")
    distinct = list(dict.fromkeys(spans))
    passage, question = str(row["passage"]).strip(), str(row["question"]).strip()
    if not passage or not question:
        raise ValueError("empty passage or question")
    return Sample(
        id=str(row.get("query_id") or index),
        task=task.name,
        fields={"question": f"{passage} {question}", "passage_id": str(row.get("section_id", passage[:80]))},
        target=[distinct],  # one gold answer, given as its spans (several for multi-span answers)
        metadata={"section_id": row.get("section_id"), "n_spans": len(distinct)},
    )


def same_passage(exemplar: Sample, sample: Sample) -> bool:
    # an exemplar about the same passage would hand the model the passage's facts (and answers)
    return exemplar.fields["passage_id"] == sample.fields["passage_id"]


@dataclass
class DropTask(FewShotTask):
    """DROP; `single_answer_only` keeps the items whose answer is one distinct span, as INSTRUCTEVAL."""

    single_answer_only: bool = True

    def load(self, split: str | None = None, limit: int | None = None, strict: bool = False) -> LoadedSamples:
        loaded = super().load(split, None, strict)
        samples = [s for s in loaded.samples if not self.single_answer_only or s.metadata["n_spans"] == 1]
        return LoadedSamples(samples[:limit] if limit is not None else samples, loaded.malformed)


@register_task("drop")
def drop(data: str | None = None) -> DropTask:
    return DropTask(
        name="drop",
        source=local_or(Source("hub", "ucinlp/drop"), data),
        split="validation",
        fewshot_split="validation",
        shots=3,
        layout=DROP_LAYOUT,
        variants=DROP_VARIANTS,
        generation=GenerationParams(max_tokens=32, stop=("\n",)),
        scorer=lazy_scorer("drop_scorer"),
        metrics=("em", "f1"),
        capabilities=("Reading", "Reasoning"),
        description="DROP validation, 3-shot (seeded, never from the same passage), EM and F1",
        row_to_sample_fn=drop_row,
        answer_fn=lambda s, t, cot: s.target[0][0],
        conflicts=same_passage,
        settings={"items": "single-answer items only (as INSTRUCTEVAL)"},
    )
