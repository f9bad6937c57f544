"""Model backends behind one protocol, addressed by a spec string.

Specs: a bundled short name (`smollm2-135m-instruct`, `gemma3-270m`), `hf:<dir | hub id | file.gguf>`,
`openai:<model>` (with base_url), `vllm:<dir | hub id>`, `ray:<any other spec>` (replicas on a Ray cluster). Backends come from capeval and from other
packages' `capeval.models` entry points.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from capeval.errors import UnknownNameError
from capeval.models.base import (
    BACKENDS,
    Model,
    check_options,
    option_names,
    register_backend,
    takes_any_option,
)

# backend name -> module that registers it (imported lazily: torch, httpx, vllm are heavy)
_BUILTIN = {
    "hf": "capeval.models.hf",
    "bundled": "capeval.models.bundled",
    "openai": "capeval.models.openai_api",
    "vllm": "capeval.models.vllm",
    "ray": "capeval.distributed.ray_replicas",
}


def _backend(name: str) -> Any:
    if name not in BACKENDS and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in BACKENDS:
        for ep in entry_points(group="capeval.models"):
            if ep.name == name:
                BACKENDS[name] = ep.load()
    if name not in BACKENDS:
        raise UnknownNameError("model backend", name, list(_BUILTIN) + list(BACKENDS))
    return BACKENDS[name]


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


__all__ = ["Model", "bundled_names", "check_model_options", "load_model", "register_backend", "resolve"]
