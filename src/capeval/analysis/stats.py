"""Statistics for every reported number: bootstrap confidence intervals and sample-size warnings."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# Below this CI half-width (in the metric's units, e.g. accuracy 0..1) two models are usually
# separable; wider intervals get a warning saying how wide they are.
WIDE_CI = 0.05


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


def small_sample_warning(n: int, low: float, high: float, scale: float = 1.0) -> str | None:
    """A warning when the CI is too wide to tell close models apart, stating its width."""
    if n == 0:
        return "no scored samples"
    half = (high - low) / 2 / scale
    if half > WIDE_CI:
        return (
            f"n={n} is small: the 95% CI is +/-{half * 100:.1f} points wide, so differences smaller "
            "than that between models are not meaningful"
        )
    return None
