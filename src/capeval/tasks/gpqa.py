"""GPQA (Rein et al. 2023): graduate-level science questions; main and diamond sets, gated on the hub."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from capeval.errors import DatasetError
from capeval.prompting import PromptLayout
from capeval.tasks._common import FewShotTask, choice_rows, group_breakdown, local_or
from capeval.tasks.base import LoadedSamples
from capeval.tasks.registry import register_task
from capeval.tasks.sources import Source
from capeval.types import GenerationParams, MetricResult, Response, Sample, Score

GPQA_CONFIGS = {"gpqa_main": "gpqa_main", "gpqa_diamond": "gpqa_diamond", "gpqa_extended": "gpqa_extended"}
# The choice order is a property of the benchmark, not of the run: fixed per item so every model
# and every prompt seed sees the same order (the raw data always lists the correct answer first).
SHUFFLE_SEED = 0
GATED_HINT = (
    "GPQA is gated: accept its terms at https://huggingface.co/datasets/Idavidrein/gpqa, then log in "
    "(`huggingface-cli login` or HF_TOKEN); or pass a downloaded copy with --data gpqa_main=/path"
)

GPQA_LAYOUT = PromptLayout(
    description="Answer the following graduate-level science question by choosing one option.",
    answer_prefix="Answer:",
)
GPQA_VARIANTS = (
    PromptLayout(
        description="Here is a hard question written by domain experts. Pick the correct choice.",
        answer_prefix="Answer:",
    ),
    PromptLayout(
        description="Choose the single correct answer to this science question.",
        answer_prefix="The correct answer is",
    ),
    PromptLayout(description="", answer_prefix="Correct choice:"),
)


def _clean(text: Any) -> str:
    # the raw answers carry stray double spaces and trailing newlines
    return re.sub(r" {2,}", " ", str(text if text is not None else "").strip())


def gpqa_row(row: Mapping[str, Any], index: int, task: Any) -> Sample:
    """Idavidrein/gpqa row: Question, Correct Answer, Incorrect Answer 1-3, Record ID, ..."""
    correct = _clean(row["Correct Answer"])
    options = list(choice_rows([correct] + [_clean(row[f"Incorrect Answer {i}"]) for i in (1, 2, 3)]))
    record = str(row.get("Record ID") or index)
    random.Random(f"{SHUFFLE_SEED}:{record}").shuffle(options)
    question = _clean(row["Question"])
    if not question:
        raise ValueError("empty question")
    return Sample(
        id=record,
        task=task.name,
        fields={"question": question},
        target=options.index(correct),
        choices=tuple(options),
        metadata={"domain": row.get("High-level domain"), "subdomain": row.get("Subdomain")},
    )


@dataclass
class GpqaTask(FewShotTask):
    """GPQA with a load error that says the hub dataset is gated, reported overall and per domain
    (Physics, Chemistry, Biology) with the macro mean, as MMLU per subject."""

    def score(self, sample: Sample, responses: Sequence[Response]) -> Score:
        s = super().score(sample, responses)
        return replace(s, metadata={**dict(s.metadata), "domain": sample.metadata.get("domain")})

    def group_metrics(self, scores: Sequence[Score]) -> list[MetricResult]:
        return group_breakdown(self.name, scores, key=lambda s: s.metadata.get("domain"))

    def load(self, split: str | None = None, limit: int | None = None, strict: bool = False) -> LoadedSamples:
        try:
            return super().load(split, limit, strict)
        except DatasetError as e:
            if self.source.kind != "hub":
                raise
            raise DatasetError(f"{e.args[0]} (GPQA is a gated dataset)", GATED_HINT) from None


def _gpqa(name: str, data: str | None) -> GpqaTask:
    return GpqaTask(
        name=name,
        source=local_or(Source("hub", "Idavidrein/gpqa", GPQA_CONFIGS[name]), data),
        split="train",  # the hub copy has a single split
        shots=0,
        output_type="multiple_choice",
        layout=GPQA_LAYOUT,
        variants=GPQA_VARIANTS,
        generation=GenerationParams(max_tokens=8, stop=("\n",)),
        metrics=("acc", "acc_norm"),
        capabilities=("Knowledge", "Reasoning"),
        description=f"GPQA {name.split('_')[1]} (0-shot; choices shuffled with a fixed seed per item)",
        row_to_sample_fn=gpqa_row,
        strata="domain",
        settings={"gated": "yes (hub terms)", "choice order": f"shuffled, seed {SHUFFLE_SEED} + Record ID"},
    )


@register_task("gpqa_main")
def gpqa_main(data: str | None = None) -> GpqaTask:
    return _gpqa("gpqa_main", data)


@register_task("gpqa_diamond")
def gpqa_diamond(data: str | None = None) -> GpqaTask:
    return _gpqa("gpqa_diamond", data)
