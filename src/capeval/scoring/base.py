"""The scoring seam: the `Scorer` protocol and the `ScoringContext` a task may score with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from capeval.types import Response, Sample, Score

if TYPE_CHECKING:
    from capeval.engine import CacheMode, Progress
    from capeval.models.base import Model
    from capeval.store.db import Store
    from capeval.tasks.base import Task


class Scorer(Protocol):
    """Grades one sample from the responses to its requests (in request order)."""

    def __call__(self, sample: Sample, responses: Sequence[Response], task: Task) -> Score: ...


# How a judged sample's metadata["error"] starts (or contains, for tasks with several judged
# metrics) when the judge's call failed for good: the engine counts these as failed calls.
JUDGE_CALL_FAILED = "judge call failed"


@dataclass
class ScoringContext:
    """What a task may use to score beyond the responses: a judge model and the engine's store.

    Judge-based tasks (CrossEval, writing) send their judge requests with
    `capeval.engine.execute(ctx.judge, requests, ctx.store, cache=ctx.cache)` (or `run_judge`), so
    judge calls are cached too, under the run's --cache mode."""

    judge: Model | None = None  # None when no --judge was given
    store: Store | None = None
    progress: Progress | None = None
    cache: CacheMode = "use"  # the run's --cache: use, refresh or off


def error_score(sample: Sample, responses: Sequence[Response]) -> Score | None:
    """The Score of a sample whose model call failed (the first error kept), or None if none did."""
    errors = [r.error for r in responses if r.error]
    if errors:
        return Score(sample.id, sample.task, {}, None, False, sample.target, {"error": errors[0]})
    return None


def errors_scored(score: Scorer) -> Scorer:
    """`score`, except that a sample whose model call failed gets its `error_score` (no metrics)."""

    def scored(sample: Sample, responses: Sequence[Response], task: Task) -> Score:
        err = error_score(sample, responses)
        return err if err is not None else score(sample, responses, task)

    return scored
