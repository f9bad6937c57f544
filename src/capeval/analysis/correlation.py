"""Judge-vs-human agreement: Pearson, Spearman and Kendall correlations and pairwise agreement, with bootstrap CIs."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from capeval.formatting import json_safe

CorrelationMethod = Literal["pearson", "spearman", "kendall"]
METHODS: tuple[CorrelationMethod, ...] = ("pearson", "spearman", "kendall")

# CrossEval's best judge setting (references + point deduction) reached about this Pearson
# correlation with the mean human rating (arXiv 2409.19951): the anchor printed beside a user's number.
CROSSEVAL_PEARSON_ANCHOR = 0.7


@dataclass(frozen=True)
class Correlation:
    """One correlation coefficient with its percentile-bootstrap CI over resampled pairs."""

    method: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Agreement:
    """Share of pairwise votes where judge and human pick the same winner, with a bootstrap CI."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    with_ties: bool

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))  # type: ignore[no-any-return]


def correlation(x: ArrayLike, y: ArrayLike, method: CorrelationMethod = "pearson") -> tuple[float, float]:
    """(coefficient, two-sided p-value); NaN when fewer than 3 pairs or either side is constant."""
    from scipy import stats

    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"x and y differ in length ({a.size} vs {b.size})")
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return (math.nan, math.nan)
    if method == "pearson":
        r = stats.pearsonr(a, b)
    elif method == "spearman":
        r = stats.spearmanr(a, b)
    elif method == "kendall":
        r = stats.kendalltau(a, b)  # tau-b: ties are common on 1-5 scales
    else:
        raise ValueError(f"unknown correlation method {method!r}; use one of {', '.join(METHODS)}")
    return (float(r.statistic), float(r.pvalue))


def _bootstrap_values(a: np.ndarray, b: np.ndarray, method: str, idx: np.ndarray) -> np.ndarray:
    """The coefficient on each resample (rows of idx); constant resamples give NaN."""
    from scipy import stats

    xa, xb = a[idx], b[idx]
    if method in ("pearson", "spearman"):
        if method == "spearman":
            xa, xb = stats.rankdata(xa, axis=1), stats.rankdata(xb, axis=1)
        xa = xa - xa.mean(axis=1, keepdims=True)
        xb = xb - xb.mean(axis=1, keepdims=True)
        den = np.sqrt((xa * xa).sum(axis=1) * (xb * xb).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, (xa * xb).sum(axis=1) / np.where(den > 0, den, 1), np.nan)
    out = np.empty(idx.shape[0])
    for k in range(idx.shape[0]):
        if np.ptp(xa[k]) == 0 or np.ptp(xb[k]) == 0:
            out[k] = np.nan
        else:
            out[k] = stats.kendalltau(xa[k], xb[k]).statistic
    return out


def bootstrap_correlation(
    x: ArrayLike,
    y: ArrayLike,
    method: CorrelationMethod = "pearson",
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Correlation:
    """The coefficient on all pairs and a percentile bootstrap CI from resampling pairs with replacement."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    value, p = correlation(a, b, method)
    if math.isnan(value):
        return Correlation(method, value, math.nan, math.nan, int(a.size), p)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(n_resamples, a.size))
    boot = _bootstrap_values(a, b, method, idx)
    boot = boot[~np.isnan(boot)]
    if boot.size == 0:
        return Correlation(method, value, math.nan, math.nan, int(a.size), p)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return Correlation(method, value, float(lo), float(hi), int(a.size), p)


def correlations(
    x: ArrayLike,
    y: ArrayLike,
    methods: Sequence[CorrelationMethod] = METHODS,
    n_resamples: int = 1000,
    seed: int = 0,
) -> list[Correlation]:
    """Every method's coefficient with its bootstrap CI, on the same pairs."""
    return [bootstrap_correlation(x, y, m, n_resamples=n_resamples, seed=seed) for m in methods]


def correlations_by_group(
    x: ArrayLike,
    y: ArrayLike,
    groups: Sequence[Hashable],
    methods: Sequence[CorrelationMethod] = METHODS,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[Hashable, list[Correlation]]:
    """Correlations within each group (e.g. per capability), groups in first-seen order."""
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return {
        g: correlations(xa[idx], ya[idx], methods, n_resamples=n_resamples, seed=seed) for g, idx in members.items()
    }


def pairwise_agreement(
    judge: Sequence[str],
    human: Sequence[str],
    with_ties: bool = True,
    n_resamples: int = 1000,
    seed: int = 0,
) -> Agreement:
    """Share of votes where the judge's winner ("A", "B", "tie") equals the human's.

    with_ties=False drops every vote where either side said tie (MT-Bench's setup without ties)."""
    if len(judge) != len(human):
        raise ValueError(f"judge and human votes differ in length ({len(judge)} vs {len(human)})")
    pairs = [(j, h) for j, h in zip(judge, human) if with_ties or (j != "tie" and h != "tie")]
    match = np.asarray([1.0 if j == h else 0.0 for j, h in pairs])
    if match.size == 0:
        return Agreement(math.nan, math.nan, math.nan, 0, with_ties)
    rng = np.random.default_rng(seed)
    means = match[rng.integers(0, match.size, size=(n_resamples, match.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return Agreement(float(match.mean()), float(lo), float(hi), int(match.size), with_ties)


def length_bias(
    scores: ArrayLike, lengths: ArrayLike, n_resamples: int = 1000, seed: int = 0
) -> Correlation:
    """Spearman correlation of scores with response length: how much longer answers are rated higher."""
    return bootstrap_correlation(scores, lengths, "spearman", n_resamples=n_resamples, seed=seed)


def correlations_to_dict(rows: Sequence[Correlation]) -> dict[str, Mapping[str, Any]]:
    return {c.method: c.to_dict() for c in rows}
