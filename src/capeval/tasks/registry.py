"""The task registry: built-in task files, YAML specs, user folders and entry points."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from capeval.errors import TaskSpecError, UnknownNameError, did_you_mean
from capeval.tasks.base import Task

# A factory builds a Task; `data` is a local file or folder that replaces the task's source
# (same field names as the hub dataset), so users with a downloaded copy run offline.
TaskFactory = Callable[..., Task]

TASKS: dict[str, TaskFactory] = {}
SUITES: dict[str, list[str]] = {}
_include_paths: list[Path] = []
_loaded = False


def register_task(name: str) -> Callable[[TaskFactory], TaskFactory]:
    def deco(factory: TaskFactory) -> TaskFactory:
        TASKS[name] = factory
        return factory

    return deco


def register_subject_tasks(
    prefix: str, subjects: Iterable[str], build: Callable[[str, tuple[str, ...], str | None], Task]
) -> None:
    """Register `<prefix>_<subject>` for every subject: the benchmark on that subject alone, made by
    `build(name, (subject,), data)` (MMLU, CMMLU, C-Eval, BBH and MATH each register theirs)."""

    def register(subject: str) -> None:
        @register_task(f"{prefix}_{subject}")
        def factory(data: str | None = None) -> Task:
            return build(f"{prefix}_{subject}", (subject,), data)

    for subject in subjects:
        register(subject)


def register_suite(name: str, tasks: list[str]) -> None:
    SUITES[name] = tasks


def add_include_path(path: str | Path) -> None:
    """A folder of YAML task specs (`--include-path`)."""
    p = Path(path)
    if p not in _include_paths:
        _include_paths.append(p)
        if _loaded:
            _load_yaml_dir(p)


def _load_yaml_dir(folder: Path) -> None:
    from capeval.tasks.yaml_spec import load_yaml_tasks

    for factory_name, factory in load_yaml_tasks(folder).items():
        TASKS[factory_name] = factory


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import capeval.tasks as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name not in {"base", "registry", "sources", "yaml_spec"} and not mod.name.startswith("_"):
            importlib.import_module(f"capeval.tasks.{mod.name}")
    _load_yaml_dir(Path(pkg.__path__[0]) / "specs")
    for p in _include_paths:
        _load_yaml_dir(p)
    for ep in entry_points(group="capeval.tasks"):
        TASKS.setdefault(ep.name, ep.load())


def task_names() -> list[str]:
    _ensure_loaded()
    return sorted(TASKS)


def suite_names() -> list[str]:
    _ensure_loaded()
    return sorted(SUITES)


def expand(names: Iterable[str]) -> list[str]:
    """Task names with suites expanded, in order, without duplicates."""
    _ensure_loaded()
    out: list[str] = []
    for n in names:
        n = n.strip()
        if not n:
            continue
        for t in SUITES.get(n, [n]):
            if t not in out:
                out.append(t)
    return out


def task_options(name: str) -> list[str] | None:
    """The options a task's factory takes (`--task-option NAME.KEY=VALUE`); None if it takes any.

    `data` has its own flag (--data) and parameters starting with `_` are the registry's own."""
    factory = _factory(name)
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [
        p.name
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "data" and not p.name.startswith("_")
    ]


def get_task(name: str, data: str | None = None, options: Mapping[str, Any] | None = None) -> Task:
    """Build a registered task; `options` are keyword arguments of its factory (e.g. HumanEval's
    n_samples), checked against the factory's parameters."""
    factory = _factory(name)
    kwargs = dict(options or {})
    accepted = task_options(name) if kwargs else None
    if accepted is not None:
        for key in kwargs:
            if key in accepted:
                continue
            if key == "data":
                hint = f"give the task's data with --data {name}=PATH"
            elif not accepted:
                hint = f"task '{name}' takes no options"
            else:
                hint = did_you_mean(key, accepted, f"task '{name}'")
            raise TaskSpecError(f"task '{name}' has no option '{key}'", hint)
    if data:
        kwargs["data"] = data
    return factory(**kwargs)


def _factory(name: str) -> TaskFactory:
    _ensure_loaded()
    if name not in TASKS:
        raise UnknownNameError("task", name, list(TASKS) + list(SUITES))
    return TASKS[name]
