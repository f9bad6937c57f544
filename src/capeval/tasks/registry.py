"""The task registry: built-in task files, YAML specs, `--include-path` files and entry points.

capeval's task files are `capeval.tasks` entry points like any plugin's: each is loaded by the same
`_load_entry`, and every name remembers its origin, so a second `register_task("mmlu")` from a
plugin, a task file or a script raises PluginConflictError naming both origins."""

from __future__ import annotations

import inspect
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import EntryPoint
from pathlib import Path
from types import ModuleType
from typing import Any

from capeval import plugins
from capeval.errors import TaskSpecError, UnknownNameError, did_you_mean
from capeval.plugins import Registry
from capeval.tasks.base import Task

# A factory builds a Task; `data` is a local file or folder that replaces the task's source
# (same field names as the hub dataset), so users with a downloaded copy run offline.
TaskFactory = Callable[..., Task]

TASKS: Registry[TaskFactory] = Registry("task", "capeval.tasks")
SUITES: dict[str, list[str]] = {}
_include_paths: list[Path] = []
_loaded = False


def register_task(name: str) -> Callable[[TaskFactory], TaskFactory]:
    """Register `factory(data=None, **options) -> Task` under `name` (refused if another origin has it)."""

    def deco(factory: TaskFactory) -> TaskFactory:
        TASKS.add(name, factory)
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
    """A folder of task files, or one file (`--include-path`): YAML specs (*.yaml, *.yml) and Python
    files (*.py, whose `register_task` calls register their tasks)."""
    p = Path(path)
    if p not in _include_paths:
        _include_paths.append(p)
        if _loaded:
            _load_include(p)


def _task_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise TaskSpecError(f"--include-path {path}: no such file or folder")
    files = [*path.rglob("*.yaml"), *path.rglob("*.yml"), *path.rglob("*.py")]
    return sorted(f for f in files if not f.name.startswith((".", "_")))


def _load_include(path: Path, origin: str | None = None) -> None:
    from capeval.tasks.yaml_spec import load_yaml_file

    for file in _task_files(path):
        if file.suffix == ".py":
            plugins.import_file(file)
        elif file.suffix in (".yaml", ".yml"):
            name, factory = load_yaml_file(file)
            TASKS.add(name, factory, origin or f"file {file.resolve()}")
        else:
            raise TaskSpecError(f"--include-path {file}: not a task file", "give .yaml, .yml or .py files, or a folder of them")


def _builtin_entry_points() -> list[EntryPoint]:
    """One entry point per capeval task file (each registers its tasks when imported)."""
    import capeval.tasks as pkg

    skip = {"base", "registry", "sources", "yaml_spec"}
    return [
        EntryPoint(m.name, f"capeval.tasks.{m.name}", "capeval.tasks")
        for m in pkgutil.iter_modules(pkg.__path__)
        if m.name not in skip and not m.name.startswith("_")
    ]


def _load_entry(ep: EntryPoint, origin: str) -> None:
    """A `capeval.tasks` entry point names a module (its register_task calls run on import) or a
    task factory (registered under the entry point's name)."""
    obj = plugins.load(ep, origin)
    if isinstance(obj, ModuleType):
        return
    if not callable(obj):
        raise plugins.PluginLoadError(f"{origin}: {ep.value} is neither a module nor a task factory")
    TASKS.add(ep.name, obj, origin)


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import capeval.tasks as pkg

    for ep in _builtin_entry_points():
        _load_entry(ep, plugins.BUILTIN_ORIGIN)
    _load_include(Path(pkg.__path__[0]) / "specs", plugins.BUILTIN_ORIGIN)
    for ep, origin in plugins.discover("capeval.tasks"):
        _load_entry(ep, origin)
    for p in _include_paths:
        _load_include(p)


def task_origin(name: str) -> str | None:
    """Where a task comes from: capeval, a plugin package, or a task file."""
    _ensure_loaded()
    return TASKS.origin(name)


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
