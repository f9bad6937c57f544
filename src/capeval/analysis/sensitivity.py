"""Prompt sensitivity: the same tasks under N paraphrased prompts, and how far the scores move."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from capeval.types import RunResult

if TYPE_CHECKING:
    from capeval.models.base import Model
    from capeval.prompting import PromptConfig
    from capeval.store import Store
    from capeval.tasks.base import Task


@dataclass(frozen=True)
class SensitivityRow:
    """One (task, metric) across prompt variants.

    `values[i]` is the score under `variants[i]`. `ci_half_width` is the mean half-width of the
    per-variant 95% CIs; `exceeds_ci` is set when the spread (max - min) across prompts is larger
    than that: the prompt moves the score by more than the sampling noise, so a difference between
    two models smaller than the spread says little. `n[i]` counts the items the score under
    `variants[i]` is over and `n_failed[i]` the items left out there because their model call failed
    for good: where those differ between variants, the spread compares scores on different items
    (`warning` says so).
    """

    task: str
    metric: str
    mean: float
    min: float
    max: float
    std: float
    n_variants: int
    variants: tuple[int, ...]
    values: tuple[float, ...]
    ci_half_width: float
    exceeds_ci: bool
    n: tuple[int, ...] = ()
    n_failed: tuple[int, ...] = ()

    @property
    def spread(self) -> float:
        return self.max - self.min

    @property
    def warning(self) -> str | None:
        """Set when the variants' scores are not over the same items (failed calls)."""
        failed = [(v, f) for v, f in zip(self.variants, self.n_failed) if f]
        if not failed and len(set(self.n)) <= 1:
            return None
        where = ", ".join(f"v{v}: {f} failed" for v, f in failed) if failed else "different item counts"
        return (
            f"{self.task} {self.metric}: the variants' scores are over different items ({where}; n per variant "
            + ", ".join(f"v{v}: {n}" for v, n in zip(self.variants, self.n))
            + "): part of the spread may be which items were answered; resume the runs to answer them"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "spread": self.spread, "warning": self.warning}


def variant_of(result: RunResult) -> int:
    """The prompt variant a run used (0 when the run predates variants)."""
    prompt = result.config.get("prompt") or {}
    return int(prompt.get("variant", result.config.get("prompt_variant", 0)) or 0)


def summarize(results: Sequence[RunResult], include_groups: bool = False) -> list[SensitivityRow]:
    """Mean, min, max and standard deviation (n - 1) of every (task, metric) over the runs'
    prompt variants. Per-subject rows ("mmlu/anatomy") are left out unless `include_groups`."""
    table: dict[tuple[str, str], dict[int, tuple[float, float, int, int]]] = {}
    for r in results:
        v = variant_of(r)
        for m in r.metrics:
            if ("/" in m.task and not include_groups) or math.isnan(m.value):
                continue
            table.setdefault((m.task, m.metric), {})[v] = (m.value, (m.ci_high - m.ci_low) / 2, m.n, m.n_failed)
    rows: list[SensitivityRow] = []
    for (task, metric), per_variant in table.items():
        variants = tuple(sorted(per_variant))
        values = tuple(per_variant[v][0] for v in variants)
        n = len(values)
        mean = sum(values) / n
        std = math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1)) if n > 1 else 0.0
        half = sum(per_variant[v][1] for v in variants) / n
        lo, hi = min(values), max(values)
        rows.append(
            SensitivityRow(
                task, metric, mean, lo, hi, std, n, variants, values, half, n > 1 and hi - lo > half,
                n=tuple(per_variant[v][2] for v in variants), n_failed=tuple(per_variant[v][3] for v in variants),
            )
        )
    return rows


def run_variants(
    model: Model,
    tasks: Sequence[Task],
    config: PromptConfig,
    n: int,
    store: Store | None = None,
    extra_config: Mapping[str, Any] | None = None,
    **evaluate_kwargs: Any,
) -> tuple[list[RunResult], list[SensitivityRow]]:
    """Evaluate `tasks` once per prompt variant 0..n-1 (one run each, all in `store`) and
    summarize. A task that ships fewer than n variants runs only the ones it has."""
    from capeval.engine import evaluate_tasks
    from capeval.errors import CapevalError

    if n < 1:
        raise CapevalError("--prompt-variants must be at least 1")
    results: list[RunResult] = []
    for v in range(n):
        chosen = [t for t in tasks if v < t.n_variants]
        if not chosen:
            break
        result = evaluate_tasks(
            model,
            chosen,
            replace(config, variant=v),
            store=store,
            extra_config={**(extra_config or {}), "prompt_variant": v},
            **evaluate_kwargs,
        )
        short = [t.name for t in tasks if v >= t.n_variants]
        if short:
            result = replace(
                result, warnings=result.warnings + (f"prompt variant {v}: not shipped by {', '.join(short)}",)
            )
        results.append(result)
    return results, summarize(results)


__all__ = ["SensitivityRow", "run_variants", "summarize", "variant_of"]
