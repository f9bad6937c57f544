"""One run specification (RunSpec) and the resolver every way of starting a run goes through.

`capeval run` (plain and --prompt-variants), `capeval.evaluate`, `capeval mtbench`, `capeval alter`,
`capeval probe`, `capeval contamination memorisation` and `ngram`, `capeval judge-check` and
`judge-robustness` each fill a RunSpec; models, backend options, tasks, the prompt config and the
store come from here, so an option given on one path reaches the model the same way on every path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from capeval.errors import CapevalError

if TYPE_CHECKING:
    from capeval.analysis.sensitivity import SensitivityRow
    from capeval.engine import CacheMode
    from capeval.models.base import Model
    from capeval.prompting import PromptConfig
    from capeval.store import Store
    from capeval.tasks.base import Task
    from capeval.types import RunResult


@dataclass
class RunSpec:
    """Everything a run needs, as given (names and options, not loaded objects).

    Each `capeval run` option is one field: --model model, --tasks tasks, --shots shots, --cot cot,
    --system system, --chat chat, --seed seed, --prompt-variants prompt_variants, --limit limit,
    --sample sample, --stratify stratify, --batch-size batch_size, --concurrency concurrency,
    --base-url base_url, --model-option model_options, --judge judge, --judge-option judge_options,
    --recipe-file recipe_files,
    --db db, --include-path include_paths, --data data, --task-option task_options, --strict strict,
    --save-every save_every, --cache cache, --json json_out, --no-progress progress (negated).

    `model` is None for what evaluates no model under test: a judge alone (judge-check,
    judge-robustness: `judge`, `judge_options`) or a task's items alone (contamination ngram).
    """

    model: str | Model | None = None
    tasks: Sequence[str | Task] = ()
    # the prompt
    shots: int | None = None
    cot: bool = False
    system: str | None = None
    chat: bool = False
    seed: int = 1234
    prompt_variants: int = 1
    # which items
    limit: int | None = None
    sample: int | None = None
    # FIELD (every task) or TASK=FIELD items, as --stratify takes them, or {task: field}
    stratify: Sequence[str] | Mapping[str, str] = ()
    # the model's backend; batch_size, concurrency and base_url are --model-option shorthands
    batch_size: int | None = None
    concurrency: int | None = None
    base_url: str | None = None
    model_options: Mapping[str, Any] = field(default_factory=dict)
    # the judge of judged tasks (CrossEval, IMPACT, writing) and its backend options
    judge: str | Model | None = None
    judge_options: Mapping[str, Any] = field(default_factory=dict)
    recipe_files: Sequence[str | Path] = ()
    # tasks
    include_paths: Sequence[str | Path] = ()
    data: Mapping[str, str] = field(default_factory=dict)
    task_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    strict: bool = False
    # execution and storage
    db: str | Path | None = None
    save_every: int | None = None
    cache: str = "use"
    progress: bool = True
    json_out: Path | None = None

    def backend_options(self) -> dict[str, Any]:
        """The model's backend options: the shorthands, then `model_options` (which win)."""
        from capeval.models.base import model_options

        shorthands = model_options(batch_size=self.batch_size, concurrency=self.concurrency, base_url=self.base_url)
        return {**shorthands, **dict(self.model_options)}

    def judge_backend_options(self) -> dict[str, Any]:
        """The judge's backend options: --concurrency applies to it too (a served judge), then its own."""
        from capeval.models.base import model_options

        return {**model_options(concurrency=self.concurrency), **dict(self.judge_options)}

    def prompt_config(self) -> PromptConfig:
        from capeval.prompting import PromptConfig

        return PromptConfig(shots=self.shots, cot=self.cot, system=self.system, chat=self.chat, seed=self.seed)

    def cache_mode(self) -> CacheMode:
        return cache_mode(self.cache)

    def model_spec(self) -> str | None:
        """The model as the user named it (None for a Model object: its model_id stands in)."""
        return self.model if isinstance(self.model, str) else None

    def load_model(self, loaded: dict[str, Model] | None = None) -> Model:
        """The model under test: a spec string loaded with `backend_options()`, or the object given."""
        if self.model is None:
            raise CapevalError("no model to evaluate", "pass --model MODEL (any model spec, e.g. smollm2-135m-instruct)")
        return load_spec(self.model, self.backend_options(), loaded)

    def load_judge(self, loaded: dict[str, Model] | None = None) -> Model | None:
        return None if self.judge is None else load_spec(self.judge, self.judge_backend_options(), loaded)

    def open_store(self) -> Store:
        from capeval.store import Store

        return Store(Path(self.db) if self.db is not None else None)


def cache_mode(cache: str) -> CacheMode:
    """--cache checked: use, refresh or off."""
    from capeval.engine import CACHE_MODES

    if cache not in CACHE_MODES:
        raise CapevalError(f"--cache must be use, refresh or off, got '{cache}'", "refresh re-sends every call; off skips the store's answers")
    return cast("CacheMode", cache)


def load_spec(spec: str | Model, options: Mapping[str, Any], loaded: dict[str, Model] | None = None) -> Model:
    """A model from a spec string and backend options, or a Model passed through. With `loaded`, the
    same spec and options load once (a model judging itself: local weights are big)."""
    from capeval.models import load_model

    if not isinstance(spec, str):
        return spec
    if loaded is None:
        return load_model(spec, **options)
    key = f"{spec}|{sorted(options.items())}"
    if key not in loaded:
        loaded[key] = load_model(spec, **options)
    return loaded[key]


@dataclass
class ResolvedRun:
    """A RunSpec resolved: tasks built, models loaded, strata per task, the run config's extras."""

    spec: RunSpec
    model: Model
    judge: Model | None
    tasks: list[Task]
    prompt: PromptConfig
    stratify: dict[str, str]
    cache: CacheMode
    extra_config: dict[str, Any]


@dataclass
class RunOutcome:
    """The runs a RunSpec made: one, or one per prompt variant with the spread across them."""

    results: list[RunResult]
    sensitivity: list[SensitivityRow] | None = None

    @property
    def result(self) -> RunResult:
        """The run (variant 0's under --prompt-variants)."""
        return self.results[0]


def _stratify_map(stratify: Sequence[str] | Mapping[str, str], names: list[str]) -> dict[str, str]:
    """--stratify FIELD (every task) or TASK=FIELD (one task) to {task: field}."""
    if isinstance(stratify, Mapping):
        items = [f"{task}={key}" for task, key in stratify.items()]
    else:
        items = [stratify] if isinstance(stratify, str) else list(stratify)
    out: dict[str, str] = {}
    for item in items:
        task, sep, key = item.rpartition("=")
        if not key or (sep and not task):
            raise CapevalError(f"--stratify expects FIELD or TASK=FIELD, got '{item}'", "e.g. --stratify category")
        if sep and task not in names:
            raise CapevalError(f"--stratify names a task not being run: {task}", f"the run's tasks: {', '.join(names)}")
        for name in [task] if sep else names:
            out[name] = key
    return out


def use_recipe_files(tasks: Sequence[Task], paths: Sequence[str | Path]) -> list[Task]:
    """The tasks with the edited recipe files (`--recipe-file`) in place of the recipes they replace.

    A judged task (CrossEval, IMPACT) names the recipes it uses (`Task.judge_recipe_names()`) and
    takes its replacements in `Task.recipe_replacements`; a file that replaces none of them is refused."""
    from dataclasses import replace

    from capeval.judge.recipes import RecipeError, check_replacements, load_recipe_files

    if not paths:
        return list(tasks)
    replacements = load_recipe_files(paths)
    used = sorted({n for t in tasks for n in t.judge_recipe_names()})
    if not used:
        raise RecipeError(
            "--recipe-file is given but none of the run's tasks is judged",
            "judged tasks: crosseval, impact (and `capeval mtbench --recipe-file`)",
        )
    check_replacements(replacements, used, "the run's judged tasks")
    return [replace(t, recipe_replacements=replacements) if t.judge_recipe_names() else t for t in tasks]


def build_tasks(spec: RunSpec) -> list[Task]:
    """The spec's tasks: names and suites expanded and built with their --data and --task-option,
    Task objects as given, then the edited judge recipes (--recipe-file) put in place."""
    from capeval.tasks import expand, get_task
    from capeval.tasks.base import Task
    from capeval.tasks.registry import add_include_path

    for p in spec.include_paths:
        add_include_path(Path(p))
    given: list[str | Task] = [spec.tasks] if isinstance(spec.tasks, (str, Task)) else list(spec.tasks)
    names = expand([n for item in given if isinstance(item, str) for n in item.split(",") if n])
    for flag, keyed in (("--data", spec.data), ("--task-option", spec.task_options)):
        unknown = set(keyed) - set(names)
        if unknown:
            raise CapevalError(
                f"{flag} names tasks not being run: {', '.join(sorted(unknown))}", f"the run's tasks: {', '.join(names)}"
            )
    built: list[Task] = []
    for item in given:
        if isinstance(item, Task):
            built.append(item)
            continue
        for n in expand([s for s in item.split(",") if s]):
            opts = spec.task_options.get(n)
            built.append(get_task(n, data=spec.data.get(n), options=dict(opts) if opts is not None else None))
    if not built:
        raise CapevalError("no tasks to run", "name tasks or suites, e.g. --tasks mmlu,gsm8k (`capeval tasks` lists them)")
    return use_recipe_files(built, list(spec.recipe_files)) if spec.recipe_files else built


def check_items_and_shots(spec: RunSpec) -> None:
    """Refuse --shots, --limit and --sample values no run can use, before any model loads (the
    engine's own check of --limit and --sample comes after the model is loaded)."""
    if spec.shots is not None and spec.shots < 0:
        raise CapevalError(
            f"--shots must be 0 or more, got {spec.shots}", "--shots 0 for no exemplars; leave it out for each task's own"
        )
    for flag, value in (("--limit", spec.limit), ("--sample", spec.sample)):
        if value is not None and value < 1:
            raise CapevalError(f"{flag} must be at least 1, got {value}", "leave it out to evaluate every item")
    if spec.limit is not None and spec.sample is not None:
        raise CapevalError("--limit and --sample both choose the items; give one", "--sample N draws a stratified sample of N")


def resolve(spec: RunSpec) -> ResolvedRun:
    """Check the spec, build its tasks and load its models (the slow part comes last, so a usage
    error costs no model load)."""
    cache = spec.cache_mode()
    if spec.prompt_variants < 1:
        raise CapevalError("--prompt-variants must be at least 1")
    check_items_and_shots(spec)
    tasks = build_tasks(spec)
    strata = _stratify_map(spec.stratify, [t.name for t in tasks])
    if strata and spec.sample is None:
        raise CapevalError("--stratify only applies to --sample", "e.g. --sample 40 --stratify category")
    if spec.judge_options and spec.judge is None:
        raise CapevalError("--judge-option is given without --judge", "name the judge model with --judge MODEL")
    judged = [t.name for t in tasks if t.judged]
    if judged and spec.judge is None:
        raise CapevalError(
            f"{', '.join(judged)} {'is' if len(judged) == 1 else 'are'} scored by a judge model",
            "pass --judge MODEL (any model spec, e.g. openai:gpt-4o or hf:PATH)",
        )
    loaded: dict[str, Model] = {}
    model = spec.load_model(loaded)
    judge = spec.load_judge(loaded)
    judge_name = spec.judge if isinstance(spec.judge, str) or spec.judge is None else spec.judge.model_id
    from capeval.store.db import redact_secrets

    # what the run records of its options: credentials never reach the store or a results file
    extra: dict[str, Any] = {
        "model_options": redact_secrets(spec.backend_options()),
        "judge": judge_name,
        "task_options": {k: dict(v) for k, v in spec.task_options.items()},
    }
    if spec.judge is not None and spec.judge_backend_options():
        extra["judge_options"] = redact_secrets(spec.judge_backend_options())
    if spec.recipe_files:
        extra["recipe_files"] = [str(p) for p in spec.recipe_files]
    return ResolvedRun(spec, model, judge, tasks, spec.prompt_config(), strata, cache, extra)


def execute(run: ResolvedRun, store: Store) -> RunOutcome:
    """Run a resolved spec through engine.evaluate_tasks: once, or once per prompt variant; the
    same options (judge, save-every, sample, cache, ...) reach every variant's run."""
    from capeval.engine import evaluate_tasks

    spec = run.spec
    kwargs: dict[str, Any] = {
        "limit": spec.limit, "strict": spec.strict, "model_spec": spec.model_spec(), "progress": spec.progress,
        "judge": run.judge, "chunk_size": spec.save_every, "sample": spec.sample, "stratify": run.stratify,
        "cache": run.cache,
    }
    if spec.prompt_variants > 1:
        from capeval.analysis.sensitivity import run_variants

        results, summary = run_variants(
            run.model, run.tasks, run.prompt, spec.prompt_variants, store=store, extra_config=run.extra_config, **kwargs
        )
        return RunOutcome(results, summary)
    return RunOutcome([evaluate_tasks(run.model, run.tasks, run.prompt, store=store, extra_config=run.extra_config, **kwargs)])


def evaluate_spec(spec: RunSpec, store: Store | None = None) -> RunOutcome:
    """Resolve and run a spec in `store` (default: the spec's own, opened and closed here)."""
    resolved = resolve(spec)
    if store is not None:
        return execute(resolved, store)
    with spec.open_store() as own:
        return execute(resolved, own)


__all__ = ["ResolvedRun", "RunOutcome", "RunSpec", "build_tasks", "evaluate_spec", "execute", "load_spec", "resolve", "use_recipe_files"]
