"""capeval: evaluate large language models the way the best evaluation papers say it should be done."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from capeval.errors import CapevalError
from capeval.models.base import BACKENDS, Model, register_backend
from capeval.plugins import PluginConflictError, Registry
from capeval.prompting import PromptConfig, PromptLayout
from capeval.runspec import RunOutcome, RunSpec, evaluate_spec
from capeval.scoring.base import Scorer, ScoringContext
from capeval.tasks.base import Breakdown, Task
from capeval.tasks.registry import SUITES, TASKS, register_suite, register_task
from capeval.tasks.sources import Source
from capeval.types import (
    BreakdownRow,
    GenerationParams,
    MetricResult,
    Request,
    Response,
    RunResult,
    Sample,
    Score,
)

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
    sample: int | None = None,
    stratify: str | Sequence[str] | Mapping[str, str] = (),
    strict: bool = False,
    data: Mapping[str, str] | None = None,
    task_options: Mapping[str, Mapping[str, Any]] | None = None,
    include_paths: Sequence[str | Path] = (),
    recipe_files: Sequence[str | Path] = (),
    judge_options: Mapping[str, Any] | None = None,
    db: str | Path | None = None,
    save_every: int | None = None,
    cache: str = "use",
    progress: bool = False,
    **model_options: Any,
) -> RunResult:
    """Evaluate `model` on `tasks`, as `capeval run` does, and return the run's metrics.

    The arguments fill a `RunSpec` (capeval.runspec), the same one `capeval run` fills; for prompt
    variants build one yourself: `evaluate_spec(RunSpec(model, tasks, prompt_variants=3))`.

    Args:
        tasks: task or suite names (a list, or one comma-separated string) and Task objects, mixed.
        model: a model spec string or a loaded Model (anything with `generate`/`loglikelihood`).
        judge: a judge model (spec or Model) for judged tasks (CrossEval, IMPACT).
        shots, cot, system, chat, seed: the prompt (`--shots`, `--cot`, `--system`, `--chat`, `--seed`).
        limit, strict: at most N samples per task; fail on the first malformed row.
        sample, stratify: a seeded sample of N items per task, stratified by a field (`--sample`, `--stratify`).
        data: task name -> local file or folder (`--data TASK=PATH`).
        task_options: task name -> its factory's keyword arguments (`--task-option`).
        include_paths: folders of YAML task specs (`--include-path`).
        recipe_files: edited judge recipe files (`--recipe-file`).
        judge_options: backend options for a judge spec string.
        db: the SQLite store (default: $CAPEVAL_DB or the user data dir).
        save_every, cache: requests per saved backend call (`--save-every`); use, refresh or off (`--cache`).
        **model_options: backend options for a spec string (batch_size, dtype, base_url, ...); batch_size,
            concurrency and base_url mean what `capeval run`'s flags do (concurrency also reaches a judge
            given as a spec string).
    """
    from capeval.runspec import RunSpec, evaluate_spec

    if isinstance(tasks, Model) and not isinstance(model, Model):
        raise CapevalError("evaluate() takes the tasks first, then the model", "capeval.evaluate(tasks, model)")
    # the options `capeval run` has as flags fill the same fields (--concurrency reaches the judge too)
    shorthands = {k: model_options.pop(k) for k in ("batch_size", "concurrency", "base_url") if k in model_options}
    spec = RunSpec(
        model=model, tasks=[tasks] if isinstance(tasks, (str, Task)) else list(tasks), shots=shots, cot=cot,
        system=system, chat=chat, seed=seed, limit=limit, sample=sample, **shorthands,
        stratify=[stratify] if isinstance(stratify, str) else stratify, model_options=model_options, judge=judge,
        judge_options=dict(judge_options or {}), recipe_files=list(recipe_files), include_paths=list(include_paths),
        data=dict(data or {}), task_options=dict(task_options or {}), strict=strict, db=db, save_every=save_every,
        cache=cache, progress=progress,
    )
    return evaluate_spec(spec).result


__all__ = [
    "BACKENDS",
    "SUITES",
    "TASKS",
    "Breakdown",
    "BreakdownRow",
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
    "RunOutcome",
    "RunResult",
    "RunSpec",
    "Sample",
    "Score",
    "Scorer",
    "ScoringContext",
    "Source",
    "Task",
    "evaluate",
    "evaluate_spec",
    "load_model",
    "load_task",
    "register_backend",
    "register_suite",
    "register_task",
]
