"""Statistics for every reported number: bootstrap CIs, paired tests, detectable differences, headline."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from capeval.errors import CapevalError

# Below this CI half-width (in the metric's units, e.g. accuracy 0..1) two models are usually
# separable; wider intervals get a warning saying how wide they are.
WIDE_CI = 0.05

# Up to this many paired samples the permutation test enumerates all 2^n sign flips (exact p-value).
EXACT_PERMUTATION_MAX_N = 12


def _chunk(n_items: int) -> int:
    """Resamples per batch so one batch holds at most ~4M values (MMLU: 14k items x 10k resamples)."""
    return max(1, min(2000, 4_000_000 // max(1, n_items)))


class StatsError(CapevalError):
    """Data that a statistical test cannot use (no overlapping samples, empty tables)."""


def bootstrap_ci(
    values: Sequence[float], n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval of the mean of per-sample values."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if x.size == 1:
        return (mean, mean, mean)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))
    means = x[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return (mean, float(lo), float(hi))


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion; unlike the bootstrap it stays wide at 0/n and n/n."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def small_sample_warning(n: int, low: float, high: float, scale: float = 1.0, unit: str | None = None) -> str | None:
    """A warning when the CI is too wide to tell close models apart, stating its width (in points
    of a 0-1 score, or in `unit` for a measure in its own units, e.g. bits_per_byte)."""
    if n == 0:
        return "no scored samples"
    half = (high - low) / 2 / scale
    if half > WIDE_CI:
        width = f"{half:.3f} {unit}" if unit else f"{half * 100:.1f} points"
        return (
            f"n={n} is small: the 95% CI is +/-{width} wide, so differences smaller "
            "than that between models are not meaningful"
        )
    return None


# ---- paired comparison of two models on the same items ---------------------------------------


@dataclass(frozen=True)
class PairedComparison:
    """Is model A better than model B on the same items? diff = mean(A) - mean(B), with CI.

    `p_value` is two-sided, from `test` ("permutation": sign flips of the per-item differences;
    "bootstrap": resampled items, the null obtained by centring the bootstrap distribution).
    `mdd` is the smallest true difference this many paired items detects with 80% power at
    alpha 0.05 (see `minimum_detectable_difference`). Items present in only one run are left out
    and counted in `n_only_a` / `n_only_b`.
    """

    n: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    mdd: float
    n_only_a: int = 0
    n_only_b: int = 0
    task: str = ""
    metric: str = ""

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05

    @property
    def winner(self) -> Literal["a", "b"] | None:
        """The better model, "a" or "b", when the difference is significant (None otherwise): the
        higher mean, or the lower one for a metric where lower is better (bits per byte)."""
        from capeval.scoring.metrics import higher_is_better

        if not self.significant or self.diff == 0:
            return None
        return "a" if (self.diff > 0) == higher_is_better(self.metric) else "b"


def align_paired(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-item scores of two runs on their common sample ids, in a stable (sorted) order."""
    common = sorted(set(a) & set(b))
    return (
        np.array([float(a[k]) for k in common]),
        np.array([float(b[k]) for k in common]),
        common,
    )


def paired_permutation_test(
    diffs: Sequence[float], n_resamples: int = 10000, seed: int = 0
) -> float:
    """Two-sided p-value of mean(diffs) != 0 by flipping the sign of each paired difference.

    Under the null the two models are exchangeable on every item, so each difference is equally
    likely to have either sign. Exact for n <= EXACT_PERMUTATION_MAX_N; otherwise Monte Carlo
    with the (1 + hits) / (1 + resamples) correction so p is never 0."""
    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        raise StatsError("no paired items to test", "the two runs share no sample ids on this task")
    observed = abs(d.mean())
    if observed == 0:
        return 1.0
    # a tiny tolerance so flips that reproduce the observed mean exactly count as "as extreme"
    tol = 1e-12 * max(1.0, observed)
    if d.size <= EXACT_PERMUTATION_MAX_N:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
        means = np.abs(signs @ d / d.size)
        return float(np.mean(means >= observed - tol))
    rng = np.random.default_rng(seed)
    hits = 0
    chunk = _chunk(d.size)
    for start in range(0, n_resamples, chunk):
        k = min(chunk, n_resamples - start)
        signs = rng.choice((-1.0, 1.0), size=(k, d.size))
        hits += int(np.sum(np.abs(signs @ d / d.size) >= observed - tol))
    return (1 + hits) / (1 + n_resamples)


def paired_bootstrap(
    diffs: Sequence[float], n_resamples: int = 10000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float, float]:
    """(mean diff, CI low, CI high, two-sided p) from resampling items with replacement.

    The p-value shifts the bootstrap distribution to mean 0 (the null) and counts resampled
    means at least as far from 0 as the observed one (Efron & Tibshirani, ch. 16)."""
    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        raise StatsError("no paired items to test", "the two runs share no sample ids on this task")
    mean = float(d.mean())
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = _chunk(d.size)
    for start in range(0, n_resamples, chunk):
        k = min(chunk, n_resamples - start)
        means[start : start + k] = d[rng.integers(0, d.size, size=(k, d.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    if mean == 0:
        return (mean, float(lo), float(hi), 1.0)
    if np.ptp(d) == 0:
        # every difference the same: the centred resamples never move, and the bootstrap would call
        # one item significant; the sign-flip test's exact p (only all + or all - reach |mean|)
        return (mean, float(lo), float(hi), min(1.0, 2.0 / 2.0**d.size))
    hits = int(np.sum(np.abs(means - mean) >= abs(mean)))
    return (mean, float(lo), float(hi), (1 + hits) / (1 + n_resamples))


def compare_paired(
    a: Mapping[str, float],
    b: Mapping[str, float],
    test: Literal["permutation", "bootstrap"] = "permutation",
    n_resamples: int = 10000,
    seed: int = 0,
    task: str = "",
    metric: str = "",
) -> PairedComparison:
    """Paired test of model A vs model B from per-item scores keyed by sample id."""
    xa, xb, common = align_paired(a, b)
    if not common:
        raise StatsError(
            f"the two runs share no sample ids{' on ' + task if task else ''}",
            "compare runs of the same task (and the same --limit) so items can be paired",
        )
    d = xa - xb
    mean, lo, hi, p_boot = paired_bootstrap(d, n_resamples=n_resamples, seed=seed)
    p = p_boot if test == "bootstrap" else paired_permutation_test(d, n_resamples=n_resamples, seed=seed)
    sd = float(d.std(ddof=1)) if d.size > 1 else math.nan
    return PairedComparison(
        n=len(common),
        mean_a=float(xa.mean()),
        mean_b=float(xb.mean()),
        diff=mean,
        ci_low=lo,
        ci_high=hi,
        p_value=float(p),
        test=test,
        mdd=minimum_detectable_difference(len(common), paired=True, sd_diff=sd),
        n_only_a=len(set(a) - set(b)),
        n_only_b=len(set(b) - set(a)),
        task=task,
        metric=metric,
    )


def minimum_detectable_difference(
    n: int,
    paired: bool = True,
    p: float = 0.5,
    sd_diff: float | None = None,
    discordance: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float:
    """Smallest true difference in a mean score that n items per model detect (two-sided z-test).

    With z = z_{1-alpha/2} + z_{power} (1.960 + 0.842 = 2.802 at the defaults):
    - unpaired, accuracy p on each of two independent sets of n items:
          MDD = z * sqrt(2 p (1 - p) / n)          (p = 0.5 is the worst case)
    - paired, the same n items scored for both models, with per-item differences d_i:
          MDD = z * sd(d) / sqrt(n)
      `sd_diff` is sd(d) when known (e.g. observed). For 0/1 accuracy, sd(d)^2 ~= the
      discordance rate (fraction of items where exactly one model is right), used when
      `discordance` is given; with neither, the unpaired variance 2 p (1 - p) is used, the
      value when the two models' errors are independent.
    """
    if n <= 0:
        return math.inf
    # imported here: scipy.stats takes ~1 s to import, and every CLI start imports this module
    from scipy.stats import norm

    z = float(norm.ppf(1 - alpha / 2) + norm.ppf(power))
    if not paired:
        return z * math.sqrt(2 * p * (1 - p) / n)
    if sd_diff is not None and not math.isnan(sd_diff):
        return z * sd_diff / math.sqrt(n)
    var = discordance if discordance is not None else 2 * p * (1 - p)
    return z * math.sqrt(var / n)


# ---- one headline number per run -------------------------------------------------------------


@dataclass(frozen=True)
class Headline:
    """A run's single number: the macro mean over tasks of each task's primary metric, with a CI.

    The CI resamples items within each task (tasks are fixed, items are the random part) and
    averages the per-task means, so every task weighs the same whatever its size."""

    value: float
    ci_low: float
    ci_high: float
    n_tasks: int
    n_items: int
    per_task: Mapping[str, float] = field(default_factory=dict)
    metrics: Mapping[str, str] = field(default_factory=dict)
    # "" when every task's values were averaged as stored; "1-100" when tasks on different scales
    # were first put on CrossEval's 1-100 scale (`capeval.analysis.tables.scores_to_100`)
    scale: str = ""


def primary_metric(task_metrics: Sequence[str], configured: str | None = None) -> str:
    """The metric a task is summarised by: the configured one, else the task's first metric."""
    if configured:
        if configured not in task_metrics:
            raise StatsError(
                f"metric '{configured}' is not among this task's metrics ({', '.join(task_metrics)})",
                "pass one of the listed metrics",
            )
        return configured
    if not task_metrics:
        raise StatsError("task has no metrics", "was the run scored? check `capeval runs`")
    return task_metrics[0]


def headline_score(
    per_task: Mapping[str, Sequence[float]],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    metrics: Mapping[str, str] | None = None,
) -> Headline:
    """Macro mean over tasks of per-item primary-metric values, bootstrapped within tasks."""
    tasks = [t for t, v in per_task.items() if len(v) > 0]
    if not tasks:
        raise StatsError("no scored items in any task", "check that the run finished and was scored")
    rng = np.random.default_rng(seed)
    boot = np.zeros(n_resamples)
    means: dict[str, float] = {}
    for t in tasks:
        x = np.asarray(per_task[t], dtype=float)
        means[t] = float(x.mean())
        chunk = _chunk(x.size)
        for start in range(0, n_resamples, chunk):
            k = min(chunk, n_resamples - start)
            boot[start : start + k] += x[rng.integers(0, x.size, size=(k, x.size))].mean(axis=1)
    boot /= len(tasks)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return Headline(
        value=float(np.mean(list(means.values()))),
        ci_low=float(lo),
        ci_high=float(hi),
        n_tasks=len(tasks),
        n_items=sum(len(per_task[t]) for t in tasks),
        per_task=means,
        metrics=dict(metrics or {}),
    )
