"""Model backends behind one protocol, addressed by a spec string.

Specs: a bundled short name (`smollm2-135m-instruct`, `gemma3-270m`), `hf:<dir | hub id | file.gguf>`,
`openai:<model>` (with base_url), `vllm:<dir | hub id>`, `ray:<any other spec>` (replicas on a Ray
cluster), `<name>:<spec>` for a backend another package adds through a `capeval.backends` entry point
(capeval's own backends are entry points of that group too; see capeval.plugins).
"""

from __future__ import annotations

from typing import Any

from capeval import plugins
from capeval.errors import UnknownNameError
from capeval.models.base import (
    BACKENDS,
    Model,
    backend_entry_points,
    check_options,
    option_names,
    register_backend,
    takes_any_option,
)


def _backend(name: str) -> Any:
    if name not in BACKENDS:
        declared = backend_entry_points()
        if name not in declared:
            raise UnknownNameError("model backend", name, list(declared) + list(BACKENDS))
        ep, origin = declared[name]
        BACKENDS.add(name, plugins.load(ep, origin), origin)
    return BACKENDS[name]


def backend_names() -> list[str]:
    """Every backend: capeval's, other packages' entry points, and ones registered in this process."""
    return list(dict.fromkeys([*backend_entry_points(), *BACKENDS]))


def plugin_backends() -> list[tuple[str, str, str]]:
    """(name, first docstring line, origin) of each backend that is not capeval's own."""
    out = []
    for name in backend_names():
        origin = BACKENDS.origin(name) or backend_entry_points()[name][1]
        if origin == plugins.BUILTIN_ORIGIN:
            continue
        doc = (getattr(_backend(name), "__doc__", None) or "").strip().splitlines()
        out.append((name, doc[0] if doc else "", origin))
    return out


def bundled_names() -> list[str]:
    from capeval.models.bundled import BUNDLED

    return list(BUNDLED)


def resolve(spec: str) -> tuple[str, Any, str]:
    """(backend name, its factory, the spec the factory takes) for a model spec string."""
    if ":" in spec.split("/")[0] and not spec.startswith(("/", ".")):
        backend, _, rest = spec.partition(":")
        return backend, _backend(backend), rest
    names = bundled_names()
    if spec in names:
        return "bundled", _backend("bundled"), spec
    raise UnknownNameError("model", spec, names + ["hf:<path or hub id>", "openai:<model>", "ray:<spec>", "vllm:<path>"])


def check_model_options(spec: str, options: dict[str, Any]) -> None:
    """Refuse options the spec's backend does not take, without loading anything (a backend whose
    factory takes **options checks them itself when called)."""
    backend, factory, _ = resolve(spec)
    _check(backend, factory, options)


def _check(backend: str, factory: Any, options: dict[str, Any]) -> None:
    if not takes_any_option(factory):
        check_options(backend, options, option_names(factory))


def load_model(spec: str, **options: Any) -> Model:
    """Load a model from its spec string; `options` go to the backend (batch_size, dtype, ...)."""
    backend, factory, rest = resolve(spec)
    _check(backend, factory, options)
    return factory(rest, **options)


__all__ = ["Model", "backend_names", "bundled_names", "check_model_options", "load_model", "plugin_backends", "register_backend", "resolve"]
