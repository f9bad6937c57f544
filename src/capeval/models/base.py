"""The Model protocol every backend implements, and the registry of backends."""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from capeval.types import Request, Response


@runtime_checkable
class Model(Protocol):
    """A model backend. It knows nothing of tasks: it answers Requests.

    `model_id` is the model's identity in the cache key: two backends that would give different
    answers must have different ids (backend, weights, dtype, chat template use...).
    Both methods answer every request in order; a request that fails for good is answered with
    `Response(error=...)` rather than an exception, so that finished answers are never lost.
    """

    model_id: str

    def generate(self, requests: Sequence[Request]) -> list[Response]: ...

    def loglikelihood(self, requests: Sequence[Request]) -> list[Response]: ...


ModelFactory = Callable[..., Model]

# backend name -> factory(spec: str, **options)
BACKENDS: dict[str, ModelFactory] = {}


def register_backend(name: str) -> Callable[[ModelFactory], ModelFactory]:
    def deco(factory: ModelFactory) -> ModelFactory:
        BACKENDS[name] = factory
        return factory

    return deco


def model_options(**options: Any) -> dict[str, Any]:
    """Drop options left at None so each backend applies its own defaults."""
    return {k: v for k, v in options.items() if v is not None}
