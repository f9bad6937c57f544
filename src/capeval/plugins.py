"""Plugins: the entry-point groups through which capeval's built-ins and other packages add tasks,
model backends, scorers, judge recipes and CLI commands.

A package adds to capeval by declaring entry points in its pyproject.toml:

    [project.entry-points."capeval.tasks"]
    my_task = "my_pkg.tasks:my_task"          # a task factory (or a module whose register_task calls run on import)
    [project.entry-points."capeval.backends"]
    mine = "my_pkg.backend:load_mine"          # factory(spec, **options) -> Model, used as `mine:<spec>`
    [project.entry-points."capeval.scorers"]
    my_scorer = "my_pkg.scoring:my_scorer"     # a scorer, or a factory taking no arguments that returns one
    [project.entry-points."capeval.recipes"]
    my_rubric = "my_pkg:RUBRIC"                # a path to a judge recipe template (.jinja) or a folder of them
    [project.entry-points."capeval.commands"]
    my_cmd = "my_pkg.cli:register"             # register(app: typer.Typer) -> None, or a typer.Typer (a group)

capeval's own built-ins are entry points of the same groups (`BUILTIN`, declared here rather than in
capeval's pyproject so that a source checkout on PYTHONPATH sees them without being reinstalled) and
go through the same loader. Every registered name remembers where it came from; a second
registration of a name from another origin raises `PluginConflictError` naming both.
"""

from __future__ import annotations

import contextvars
import hashlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Generic, TypeVar

from capeval.errors import CapevalError

GROUPS = ("capeval.tasks", "capeval.backends", "capeval.scorers", "capeval.recipes", "capeval.commands")
# older name of the backends group, still read
_ALIASES = {"capeval.backends": ("capeval.models",)}
BUILTIN_ORIGIN = "capeval (built-in)"

# Built-in task modules are found by listing capeval/tasks (every file registers its tasks), so they
# are not listed here; see capeval.tasks.registry.
BUILTIN: dict[str, tuple[tuple[str, str], ...]] = {
    "capeval.backends": (
        ("hf", "capeval.models.hf:load_hf"),
        ("bundled", "capeval.models.bundled:load_bundled"),
        ("openai", "capeval.models.openai_api:openai_backend"),
        ("vllm", "capeval.models.vllm:load_vllm"),
        ("ray", "capeval.distributed.ray_replicas:ray_model"),
    ),
    "capeval.recipes": (("builtin", "capeval.judge.recipes:TEMPLATES_DIR"),),
    "capeval.commands": (
        ("core", "capeval.commands_core:register"),
        ("models", "capeval.models.commands:register"),
        ("analysis", "capeval.analysis.commands:register"),
        ("report", "capeval.report.commands:register"),
        ("bench", "capeval.judge.bench_commands:register"),
        ("judge", "capeval.judge.commands:register"),
        ("alter", "capeval.judge.alter_commands:register"),
        ("web", "capeval.web.commands:register"),
        ("interpret", "capeval.interpret.commands:register"),
    ),
}

T = TypeVar("T")

_loading: contextvars.ContextVar[str | None] = contextvars.ContextVar("capeval_plugin_origin", default=None)


class PluginConflictError(CapevalError):
    """Two origins (capeval, a plugin package, a task file) register the same name."""


class PluginLoadError(CapevalError):
    """An entry point or task file that cannot be imported or does not hold what its group expects."""


@contextmanager
def loading_from(origin: str) -> Iterator[None]:
    """Registrations made inside this block (e.g. a module's @register_task) belong to `origin`."""
    token = _loading.set(origin)
    try:
        yield
    finally:
        _loading.reset(token)


def origin_of(obj: Any) -> str:
    """Where a registration comes from: the plugin or file being loaded, else the defining module."""
    current = _loading.get()
    if current is not None:
        return current
    module = getattr(obj, "__module__", None) or "?"
    if module == "capeval" or module.startswith("capeval."):
        return BUILTIN_ORIGIN
    file = getattr(sys.modules.get(module), "__file__", None)
    return f"module {module}" + (f" ({file})" if file else "")


class Registry(dict[str, T], Generic[T]):
    """A name -> object mapping that remembers each name's origin and refuses a second origin."""

    def __init__(self, kind: str, group: str) -> None:
        super().__init__()
        self.kind = kind
        self.group = group
        self.origins: dict[str, str] = {}

    def add(self, name: str, obj: T, origin: str | None = None) -> T:
        origin = origin or origin_of(obj)
        self.check(name, origin)
        self[name] = obj
        self.origins[name] = origin
        return obj

    def check(self, name: str, origin: str) -> None:
        before = self.origins.get(name)
        if before is not None and before != origin:
            raise PluginConflictError(
                f"{self.kind} '{name}' is registered twice: by {before} and by {origin}",
                f"rename one of them (entry point group {self.group})",
            )

    def origin(self, name: str) -> str | None:
        return self.origins.get(name)


def entry_point_origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return BUILTIN_ORIGIN
    return f"package {dist.metadata['Name']} {dist.version} (entry point {ep.group}: {ep.name} = {ep.value})"


@cache
def installed(group: str) -> tuple[EntryPoint, ...]:
    """Entry points other packages declare for `group` (and its older alias)."""
    found: list[EntryPoint] = []
    for name in (group, *_ALIASES.get(group, ())):
        found.extend(entry_points(group=name))
    return tuple(found)


def discover(group: str) -> list[tuple[EntryPoint, str]]:
    """capeval's built-in entry points of `group`, then the installed ones, each with its origin."""
    out = [(EntryPoint(name, value, group), BUILTIN_ORIGIN) for name, value in BUILTIN.get(group, ())]
    out += [(ep, entry_point_origin(ep)) for ep in installed(group)]
    return out


def index(group: str, kind: str) -> dict[str, tuple[EntryPoint, str]]:
    """Entry points of `group` by name (for groups whose entry point name is the registered name:
    backends, scorers); one name declared by two origins raises PluginConflictError."""
    out: dict[str, tuple[EntryPoint, str]] = {}
    for ep, origin in discover(group):
        if ep.name in out and out[ep.name][1] != origin:
            raise PluginConflictError(
                f"{kind} '{ep.name}' is registered twice: by {out[ep.name][1]} and by {origin}",
                f"rename one of them (entry point group {group})",
            )
        out.setdefault(ep.name, (ep, origin))
    return out


def load(ep: EntryPoint, origin: str) -> Any:
    """Import an entry point's object; registrations its import makes belong to `origin`."""
    with loading_from(origin):
        try:
            return ep.load()
        except CapevalError:
            raise
        except Exception as e:
            raise PluginLoadError(
                f"{origin}: cannot load {ep.value}: {type(e).__name__}: {e}",
                "fix or uninstall the plugin package (re-run with --debug for the traceback)",
            ) from e


def import_file(path: Path) -> Any:
    """Import a Python file (a `--include-path` task file); its registrations belong to the file."""
    path = path.resolve()
    name = "capeval_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:12] + "_" + "".join(
        c if c.isalnum() else "_" for c in path.stem
    )
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with loading_from(f"file {path}"):
        try:
            spec.loader.exec_module(module)
        except CapevalError:
            del sys.modules[name]
            raise
        except Exception as e:
            del sys.modules[name]
            raise PluginLoadError(f"{path}: {type(e).__name__}: {e}", "re-run with --debug for the traceback") from e
    return module


def call_factory(obj: Callable[..., Any]) -> Any:
    """A scorer entry may be the scorer itself or a factory taking no arguments that returns one."""
    import inspect

    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return obj
    required = [p for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return obj() if not required else obj
