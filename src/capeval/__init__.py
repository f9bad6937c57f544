"""capeval: evaluate large language models the way the best evaluation papers say it should be done."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from capeval.errors import CapevalError
from capeval.models.base import BACKENDS, Model, register_backend
from capeval.plugins import PluginConflictError, Registry
from capeval.prompting import PromptConfig, PromptLayout
from capeval.scoring.base import Scorer, ScoringContext
from capeval.tasks.base import Task
from capeval.tasks.registry import SUITES, TASKS, register_suite, register_task
from capeval.tasks.sources import Source
from capeval.types import GenerationParams, MetricResult, Request, Response, RunResult, Sample, Score

__version__ = "0.1.0"


def load_model(spec: str, **options: Any) -> Model:
    """A model from its spec (`smollm2-135m-instruct`, `hf:PATH`, `openai:NAME@URL`, `<plugin>:SPEC`)."""
    from capeval.models import load_model as _load

    return _load(spec, **options)


def load_task(name: str, data: str | None = None, **options: Any) -> Task:
    """A registered task by name; `options` are its factory's keyword arguments (`--task-option`)."""
    from capeval.tasks import get_task

    return get_task(name, data=data, options=options)


def evaluate(
    tasks: str | Task | Sequence[str | Task],
    model: str | Model,
    judge: str | Model | None = None,
    *,
    shots: int | None = None,
    cot: bool = False,
    system: str | None = None,
    chat: bool = False,
    seed: int = 1234,
    limit: int | None = None,
    strict: bool = False,
    data: Mapping[str, str] | None = None,
    task_options: Mapping[str, Mapping[str, Any]] | None = None,
    recipe_files: Sequence[str | Path] = (),
    db: str | Path | None = None,
    progress: bool = False,
    **model_options: Any,
) -> RunResult:
    """Evaluate `model` on `tasks`, as `capeval run` does, and return the run's metrics.

    Args:
        tasks: task or suite names (a list, or one comma-separated string) and Task objects, mixed.
        model: a model spec string or a loaded Model (anything with `generate`/`loglikelihood`).
        judge: a judge model (spec or Model) for judged tasks (CrossEval, IMPACT).
        shots, cot, system, chat, seed: the prompt (`--shots`, `--cot`, `--system`, `--chat`, `--seed`).
        limit, strict: at most N samples per task; fail on the first malformed row.
        data: task name -> local file or folder (`--data TASK=PATH`).
        task_options: task name -> its factory's keyword arguments (`--task-option`).
        recipe_files: edited judge recipe files (`--recipe-file`).
        db: the SQLite store (default: $CAPEVAL_DB or the user data dir).
        **model_options: backend options for a spec string (batch_size, dtype, base_url, ...).
    """
    from capeval.engine import evaluate_tasks
    from capeval.judge.recipes import use_recipe_files
    from capeval.store import Store
    from capeval.tasks import expand, get_task

    if isinstance(tasks, Model) and not isinstance(model, Model):
        raise CapevalError("evaluate() takes the tasks first, then the model", "capeval.evaluate(tasks, model)")
    given: list[str | Task] = [tasks] if isinstance(tasks, (str, Task)) else list(tasks)
    names = [t for item in given if isinstance(item, str) for t in item.split(",")]
    local, opts = dict(data or {}), dict(task_options or {})
    for label, keyed in (("data", local), ("task_options", opts)):
        unknown = set(keyed) - set(expand(names))
        if unknown:
            raise CapevalError(f"{label} names tasks not being run: {', '.join(sorted(unknown))}")
    built: list[Task] = []
    for item in given:
        if isinstance(item, Task):
            built.append(item)
            continue
        built += [get_task(n, data=local.get(n), options=opts.get(n)) for n in expand(item.split(","))]
    built = use_recipe_files(built, list(recipe_files))
    judged = [t.name for t in built if t.settings.get("judge")]
    if judged and judge is None:
        raise CapevalError(f"{', '.join(judged)} scored by a judge model, and no judge was given", "pass judge=MODEL")
    m = load_model(model, **model_options) if isinstance(model, str) else model
    j = load_model(judge) if isinstance(judge, str) else judge
    extra: dict[str, Any] = {"model_options": model_options, "judge": judge if isinstance(judge, str) else getattr(j, "model_id", None)}
    if recipe_files:
        extra["recipe_files"] = [str(p) for p in recipe_files]
    with Store(db) as store:
        return evaluate_tasks(
            m,
            built,
            PromptConfig(shots=shots, cot=cot, system=system, chat=chat, seed=seed),
            store=store,
            limit=limit,
            strict=strict,
            model_spec=model if isinstance(model, str) else None,
            progress=progress,
            extra_config=extra,
            judge=j,
        )


__all__ = [
    "BACKENDS",
    "SUITES",
    "TASKS",
    "CapevalError",
    "GenerationParams",
    "MetricResult",
    "Model",
    "PluginConflictError",
    "PromptConfig",
    "PromptLayout",
    "Registry",
    "Request",
    "Response",
    "RunResult",
    "Sample",
    "Score",
    "Scorer",
    "ScoringContext",
    "Source",
    "Task",
    "evaluate",
    "load_model",
    "load_task",
    "register_backend",
    "register_suite",
    "register_task",
]
