"""Contamination check (a): the gap between a public benchmark split and a private one of the same task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from capeval.analysis.contamination.errors import ContaminationError
from capeval.analysis.stats import PairedComparison, compare_paired, minimum_detectable_difference


@dataclass(frozen=True)
class SplitGap:
    """gap = mean(public) - mean(private), a two-sample bootstrap 95% CI and a permutation p-value.

    `flagged` when public is better and the gap's CI excludes 0: the public items are easier for
    this model than items it cannot have seen, which is what contamination looks like (a harder
    private split also produces it: the splits must be drawn from the same distribution)."""

    mean_public: float
    mean_private: float
    gap: float
    ci_low: float
    ci_high: float
    p_value: float
    n_public: int
    n_private: int
    mdd: float
    flagged: bool


def split_gap(
    public: Sequence[float], private: Sequence[float], n_resamples: int = 10000, seed: int = 0, alpha: float = 0.05
) -> SplitGap:
    """Compare per-item scores on a public and a private split (different items: unpaired)."""
    x, y = np.asarray(public, dtype=float), np.asarray(private, dtype=float)
    if x.size == 0 or y.size == 0:
        raise ContaminationError(
            f"need scores on both splits (public: {x.size}, private: {y.size})", "run the task on both splits first"
        )
    gap = float(x.mean() - y.mean())
    rng = np.random.default_rng(seed)
    boot = np.empty(n_resamples)
    # batches of at most ~4M values keep memory flat for splits of tens of thousands of items
    chunk = max(1, min(1000, 4_000_000 // (x.size + y.size)))
    for start in range(0, n_resamples, chunk):
        k = min(chunk, n_resamples - start)
        bx = x[rng.integers(0, x.size, size=(k, x.size))].mean(axis=1)
        by = y[rng.integers(0, y.size, size=(k, y.size))].mean(axis=1)
        boot[start : start + k] = bx - by
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    # permutation test: under the null the split labels are exchangeable
    pooled = np.concatenate([x, y])
    hits = 0
    for start in range(0, n_resamples, chunk):
        k = min(chunk, n_resamples - start)
        perm = np.argsort(rng.random((k, pooled.size)), axis=1)
        shuffled = pooled[perm]
        d = shuffled[:, : x.size].mean(axis=1) - shuffled[:, x.size :].mean(axis=1)
        hits += int(np.sum(np.abs(d) >= abs(gap) - 1e-12))
    p = (1 + hits) / (1 + n_resamples)
    n = min(x.size, y.size)
    p_pool = float(np.clip(pooled.mean(), 0.0, 1.0))
    return SplitGap(
        mean_public=float(x.mean()),
        mean_private=float(y.mean()),
        gap=gap,
        ci_low=float(lo),
        ci_high=float(hi),
        p_value=float(p),
        n_public=int(x.size),
        n_private=int(y.size),
        mdd=minimum_detectable_difference(n, paired=False, p=p_pool if 0 < p_pool < 1 else 0.5),
        flagged=bool(gap > 0 and lo > 0),
    )


def perturbation_drop(
    original: Mapping[str, float],
    variants: Mapping[str, float],
    variant_to_original: Mapping[str, str],
    n_resamples: int = 10000,
    seed: int = 0,
) -> PairedComparison:
    """Paired drop from original items to their perturbed variants (GSM-Symbolic's measure).

    Each original item is paired with the mean score of its variants; diff = original - variants,
    so a positive, significant diff means the model does worse on numbers it has not seen."""
    per_original: dict[str, list[float]] = {}
    for vid, score in variants.items():
        oid = variant_to_original.get(vid)
        if oid is not None:
            per_original.setdefault(oid, []).append(float(score))
    if not per_original:
        raise ContaminationError(
            "no variant could be matched to its original item",
            "pass the variants file written by `capeval contamination perturb` for this run",
        )
    mean_variant = {oid: sum(v) / len(v) for oid, v in per_original.items()}
    return compare_paired(original, mean_variant, n_resamples=n_resamples, seed=seed)
