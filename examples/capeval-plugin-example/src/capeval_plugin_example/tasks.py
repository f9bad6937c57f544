"""The `example_arith` task: five sums from the package's own data file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from capeval import Task
from capeval.tasks import Source
from capeval.types import GenerationParams, Sample


def _sample(row: Mapping[str, Any], index: int, task: Task) -> Sample:
    return Sample(id=str(row["id"]), task=task.name, fields={"question": row["question"]}, target=str(row["answer"]))


def example_arith(data: str | None = None) -> Task:
    """Five sums, answered in free text and scored by the plugin's `contains_answer` scorer."""
    from capeval.scoring import get_scorer

    return Task(
        name="example_arith",
        source=Source("local", data or str(Path(__file__).parent / "sums.jsonl")),
        output_type="generate",
        generation=GenerationParams(max_tokens=16),
        scorer=get_scorer("contains_answer"),
        metrics=("contains",),
        description="example plugin: five sums (capeval-plugin-example)",
        row_to_sample_fn=_sample,
    )
