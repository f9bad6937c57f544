"""Model backends behind one protocol, addressed by a spec string.

Specs: a bundled short name (`smollm2-135m-instruct`, `gemma3-270m`), `hf:<dir | hub id | file.gguf>`,
`openai:<model>` (with base_url), `vllm:<dir | hub id>`. Backends come from capeval and from other
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


def load_model(spec: str, **options: Any) -> Model:
    """Load a model from its spec string; `options` go to the backend (batch_size, dtype, ...)."""
    if ":" in spec.split("/")[0] and not spec.startswith(("/", ".")):
        backend, _, rest = spec.partition(":")
        factory = _backend(backend)
        if not takes_any_option(factory):  # a factory taking **options checks them itself
            check_options(backend, options, option_names(factory))
        return factory(rest, **options)
    names = bundled_names()
    if spec in names:
        return _backend("bundled")(spec, **options)
    raise UnknownNameError("model", spec, names + ["hf:<path or hub id>", "openai:<model>", "vllm:<path>"])


__all__ = ["Model", "bundled_names", "load_model", "register_backend"]
