"""The audit trail: each run's samples of each task, as the report lists them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from capeval.report.data import RunRecord, SampleRecord
from capeval.report.sections.base import (
    task_samples_anchor,
)


@dataclass
class SampleGroup:
    """One run's samples of one task, as rendered: `shown` may be a prefix of all of them."""

    run: RunRecord
    task: str
    anchor: str
    primary: str | None
    shown: list[SampleRecord]
    total: int


def sample_groups(runs: Sequence[RunRecord], max_per_task: int | None) -> list[SampleGroup]:
    out = []
    for r in runs:
        for t, samples in r.samples.items():
            shown = list(samples if max_per_task is None else samples[:max_per_task])
            out.append(SampleGroup(r, t, task_samples_anchor(r.run_id, t), r.primary.get(t), shown, len(samples)))
    return out
