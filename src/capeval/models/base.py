"""The Model protocol every backend implements, and the registry of backends."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.metadata import EntryPoint
from typing import Any, Protocol, runtime_checkable

from capeval import plugins
from capeval.errors import ModelError, did_you_mean
from capeval.plugins import Registry
from capeval.types import Request, Response


@runtime_checkable
class Model(Protocol):
    """A model backend. It knows nothing of tasks: it answers Requests.

    `model_id` is the model's identity in the cache key: two backends that would give different
    answers must have different ids (backend, weights, dtype, chat template use...).
    Both methods answer every request in order; a request that fails for good is answered with
    `Response(error=...)` rather than an exception, so that finished answers are never lost.
    Backends over local files or hub snapshots put what the files hold into `model_id` (a
    fingerprint of the weights, config, tokenizer and chat template, or the hub commit), so new
    weights saved into the same folder are never answered from the old weights' cache rows.
    Optional: `identity` (a dict the run config records: `base_id`, the id without the
    fingerprint or commit, and that `fingerprint` or `revision`; see models.fingerprint),
    `hidden_states(texts, ends)` (per-layer hidden states, for `capeval probe`; the
    transformers backend has it) and `close()`.
    Optional for backends that serve calls concurrently: `stream(requests)`, an iterator that
    answers requests of any kind as they finish, yielding `(index, Response)` in completion order
    and `None` every fraction of a second while nothing finishes; closing it abandons the calls
    in flight. The engine prefers it when present (the openai backend has it) and saves answers
    as they arrive; a backend without it is called with batches, each saved before the next.
    """

    model_id: str

    def generate(self, requests: Sequence[Request]) -> list[Response]: ...

    def loglikelihood(self, requests: Sequence[Request]) -> list[Response]: ...


ModelFactory = Callable[..., Model]

# backend name -> factory(spec: str, **options); filled as backends are used (torch, httpx, vllm
# are heavy), from the `capeval.backends` entry points (capeval's own and other packages')
BACKENDS: Registry[ModelFactory] = Registry("model backend", "capeval.backends")


def backend_entry_points() -> dict[str, tuple[EntryPoint, str]]:
    """Every backend name an entry point declares, with the entry point and its origin (built-in
    first); two origins declaring one name raise PluginConflictError."""
    return plugins.index("capeval.backends", BACKENDS.kind)


def register_backend(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register `factory(spec, **options) -> Model` as the backend `name:` (e.g. from a script or a
    test). A name another origin already has (a built-in such as `hf`, or a plugin) is refused."""

    def deco(factory: ModelFactory) -> ModelFactory:
        origin = plugins.origin_of(factory)
        declared = backend_entry_points().get(name)
        if declared is not None and declared[1] != origin:
            raise plugins.PluginConflictError(
                f"model backend '{name}' is registered twice: by {declared[1]} and by {origin}",
                "rename one of them (entry point group capeval.backends)",
            )
        BACKENDS.add(name, factory, origin)
        return factory

    return deco


def batch_order(req: Request) -> tuple[str, int]:
    """The order a backend batches requests in: those sharing a few-shot prefix together (its KV
    cache is computed once), and within that the longest prompt first, so batches are padded as
    little as one sort over the whole run allows. The engine and backends that batch on their own
    use this one key."""
    prompt = req.prompt
    chars = len(prompt) if isinstance(prompt, str) else sum(len(m.content) for m in prompt)
    return (req.shared_prefix or "", -chars)


def sampling_seed(req: Request) -> int | None:
    """The random seed of one sampled request (None when greedy), so a draw depends on the request
    alone, not on its batch. It hashes the whole request: its prompt, its parameters (`params.seed`
    among them) and `repeat`, so the n draws of pass@k differ from each other, two items' draws are
    not one random stream (with a seed alone, every item's r-th draw shared its random numbers), and
    every re-run repeats them."""
    if req.params.greedy:
        return None
    return int(hashlib.sha256(req.key("seed").encode()).hexdigest()[:15], 16)


def model_options(**options: Any) -> dict[str, Any]:
    """Drop options left at None so each backend applies its own defaults."""
    return {k: v for k, v in options.items() if v is not None}


def option_names(func: Callable[..., Any], skip: Iterable[str] = ()) -> list[str]:
    """The keyword options a backend factory or model class takes (its first positional, the
    spec, and the names in `skip` left out)."""
    params = list(inspect.signature(func).parameters.values())
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    skipped = set(skip) | ({named[0].name} if named and named[0].kind is named[0].POSITIONAL_OR_KEYWORD else set())
    return [p.name for p in named if p.name not in skipped]


def takes_any_option(func: Callable[..., Any]) -> bool:
    """Whether a factory takes **options (and so must check them itself)."""
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(func).parameters.values())


def check_options(backend: str, options: Mapping[str, Any], accepted: Iterable[str]) -> None:
    """Refuse an option the backend does not take (a typo in --model-option would otherwise be
    dropped silently and the run would use the default)."""
    known = set(accepted)
    for key in options:
        if key not in known:
            raise ModelError(f"unknown option '{key}' for the {backend} backend", did_you_mean(key, known, f"the {backend} backend"))
