"""capeval: evaluate large language models the way the best evaluation papers say it should be done."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from capeval.errors import CapevalError
from capeval.prompting import PromptConfig
from capeval.types import MetricResult, Request, Response, RunResult, Sample, Score

__version__ = "0.1.0"


def load_model(spec: str, **options: Any) -> Any:
    from capeval.models import load_model as _load

    return _load(spec, **options)


def load_task(name: str, data: str | None = None) -> Any:
    from capeval.tasks import get_task

    return get_task(name, data=data)


def evaluate(
    model: Any,
    tasks: Sequence[str] | str,
    shots: int | None = None,
    cot: bool = False,
    system: str | None = None,
    chat: bool = False,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 1234,
    db: str | None = None,
    progress: bool = False,
    **model_options: Any,
) -> RunResult:
    """Evaluate a model (spec string or loaded Model) on tasks (names or suites); see `capeval run`."""
    from capeval.engine import evaluate_tasks
    from capeval.store import Store
    from capeval.tasks import expand, get_task

    names = expand(tasks.split(",") if isinstance(tasks, str) else tasks)
    m = load_model(model, **model_options) if isinstance(model, str) else model
    with Store(db) as store:
        return evaluate_tasks(
            m,
            [get_task(n) for n in names],
            PromptConfig(shots=shots, cot=cot, system=system, chat=chat, seed=seed),
            store=store,
            limit=limit,
            sample=sample,
            model_spec=model if isinstance(model, str) else None,
            progress=progress,
        )


__all__ = [
    "CapevalError",
    "MetricResult",
    "PromptConfig",
    "Request",
    "Response",
    "RunResult",
    "Sample",
    "Score",
    "evaluate",
    "load_model",
    "load_task",
]
