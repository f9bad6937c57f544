"""`ray:<spec>`: one model served by several replicas (Ray actors), on this machine or a Ray cluster.

The engine stays in the driver: it dedups, reads and writes the cache and sends each chunk of
requests to this backend, which deals the chunk out to the replicas (request i to replica i mod n:
the engine's chunks are sorted longest first, so every replica gets an equal share of long and short
prompts and still batches them in sorted order) and puts the answers back in order. The replicas load
the same spec with the same options, so the model id, and with it every cache key, is the one a
single-process run of that spec uses: a run started locally resumes on a cluster and the other way
round.

Options: `replicas` (default 2), `address` (None: a local Ray instance, started on first use;
"auto" or "ray://host:10001": an existing cluster, whose nodes need capeval and the model installed),
`cpus_per_replica` (also the replica's torch/OpenMP thread count), `gpus_per_replica`; every other
option goes to the replicated backend (e.g. `dtype`, `batch_size`, `base_url`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from capeval.errors import CapevalError, MissingExtraError, ModelError
from capeval.models.base import register_backend
from capeval.types import Request, Response

# passed on to the replicas' processes: offline hub settings, capeval's own, thread counts
FORWARDED_ENV_PREFIXES = ("HF_", "CAPEVAL_", "TRANSFORMERS_", "TOKENIZERS_")


class _Replica:
    """One copy of the model in a Ray actor process."""

    def __init__(self, spec: str, options: dict[str, Any]) -> None:
        from capeval.models import load_model

        self.model = load_model(spec, **options)
        self.answered = 0

    def model_id(self) -> str:
        return self.model.model_id

    def identity(self) -> dict[str, Any] | None:
        return getattr(self.model, "identity", None)

    def run(self, kind: str, requests: Sequence[Request]) -> list[Response]:
        self.answered += len(requests)
        call = self.model.generate if kind == "generate" else self.model.loglikelihood
        return call(requests)

    def stats(self) -> tuple[int, int]:
        return os.getpid(), self.answered


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingExtraError("ray", "ray") from None
    return ray


class RayReplicas:
    """A capeval Model whose calls are spread over `replicas` copies of the model `spec`."""

    def __init__(
        self,
        spec: str,
        replicas: int = 2,
        address: str | None = None,
        cpus_per_replica: float = 1.0,
        gpus_per_replica: float = 0.0,
        **options: Any,
    ) -> None:
        from capeval.models import check_model_options

        if replicas < 1:
            raise ModelError(f"replicas must be at least 1, not {replicas}")
        if spec.startswith("ray:"):
            raise ModelError("a ray: spec cannot wrap another ray: spec")
        check_model_options(spec, options)  # a typo fails here, not in every replica
        ray = _ray()
        self.started_ray = not ray.is_initialized()
        if self.started_ray:
            env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}
            threads = str(max(1, int(cpus_per_replica)))
            env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
            try:
                ray.init(
                    address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                    runtime_env={"env_vars": env},
                )
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise ModelError(
                    f"cannot start or join a Ray cluster at {address or 'this machine'}: {e}",
                    "leave address out for a local Ray instance, or give a running cluster's address (auto, ray://HOST:10001)",
                ) from None
        actor = ray.remote(num_cpus=cpus_per_replica, num_gpus=gpus_per_replica)(_Replica)
        self._ray = ray
        self.spec = spec
        self._actors = [actor.remote(spec, options) for _ in range(replicas)]
        try:
            ids = ray.get([a.model_id.remote() for a in self._actors])
        except ray.exceptions.RayError as e:  # a replica failed to load the model: say why, once
            self.close()
            cause = getattr(e, "cause", None) or e
            raise ModelError(f"a replica could not load {spec}: {cause}") from None
        if len(set(ids)) != 1:
            self.close()
            raise ModelError(f"the replicas of {spec} disagree on the model id: {sorted(set(ids))}")
        self.model_id = ids[0]
        # what the files held (fingerprint or hub commit), for the run config; the ids above
        # already include it, so replicas on nodes with other weights are refused
        self.identity = ray.get(self._actors[0].identity.remote())

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        return self._spread("generate", requests)

    def loglikelihood(self, requests: Sequence[Request]) -> list[Response]:
        return self._spread("loglikelihood", requests)

    def _spread(self, kind: str, requests: Sequence[Request]) -> list[Response]:
        n = len(self._actors)
        shards = [list(requests[i::n]) for i in range(n)]
        futures = [(i, a.run.remote(kind, shards[i])) for i, a in enumerate(self._actors) if shards[i]]
        out: list[Response | None] = [None] * len(requests)
        for i, future in futures:
            try:
                answers = self._ray.get(future)
            except self._ray.exceptions.RayError as e:  # a replica died: its share fails (a re-run retries it)
                cause = getattr(e, "cause", None) or e
                answers = [Response(error=f"replica {i} failed: {type(cause).__name__}: {cause}")] * len(shards[i])
            if len(answers) != len(shards[i]):
                raise CapevalError(f"replica {i} of {self.spec} answered {len(answers)} of {len(shards[i])} requests")
            for j, resp in enumerate(answers):
                out[i + j * n] = resp
        return [r if r is not None else Response(error="no answer") for r in out]

    def replica_stats(self) -> list[tuple[int, int]]:
        """(process id, requests answered) per replica."""
        return list(self._ray.get([a.stats.remote() for a in self._actors]))

    def close(self) -> None:
        for a in self._actors:
            self._ray.kill(a)
        self._actors = []
        if self.started_ray:
            self._ray.shutdown()
            self.started_ray = False


@register_backend("ray")
def ray_model(spec: str, **options: Any) -> RayReplicas:
    return RayReplicas(spec, **options)
