"""Paired tests, minimum detectable difference and the headline number."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from capeval.analysis.stats import (
    StatsError,
    compare_paired,
    headline_score,
    minimum_detectable_difference,
    paired_bootstrap,
    paired_permutation_test,
    primary_metric,
)


def test_exact_permutation_p_value_small_n():
    # 5 items all favouring A by 1: only the all-plus and all-minus sign patterns are as extreme
    assert paired_permutation_test([1, 1, 1, 1, 1]) == pytest.approx(2 / 32)
    # one item against: patterns with |mean| >= 3/5 are those with at most one sign differing
    assert paired_permutation_test([1, 1, 1, 1, -1]) == pytest.approx(12 / 32)
    assert paired_permutation_test([0, 0, 0]) == 1.0


def test_monte_carlo_permutation_agrees_with_scipy():
    rng = np.random.default_rng(0)
    a = (rng.random(60) < 0.65).astype(float)
    b = (rng.random(60) < 0.5).astype(float)
    ours = paired_permutation_test(a - b, n_resamples=20000, seed=1)
    ref = sps.permutation_test(
        (a, b), lambda x, y: np.mean(x - y), permutation_type="samples", n_resamples=20000, random_state=2
    ).pvalue
    assert ours == pytest.approx(ref, abs=0.02)


def test_compare_paired_aligns_by_sample_id():
    a = {"q1": 1.0, "q2": 1.0, "q3": 0.0, "q4": 1.0, "only_a": 1.0}
    # same items, other order, plus one item A never saw
    b = {"q4": 0.0, "q3": 0.0, "q2": 1.0, "q1": 0.0, "only_b": 0.0, "only_b2": 1.0}
    r = compare_paired(a, b)
    assert r.n == 4 and r.n_only_a == 1 and r.n_only_b == 2
    assert r.mean_a == pytest.approx(0.75) and r.mean_b == pytest.approx(0.25)
    assert r.diff == pytest.approx(0.5)
    # diffs (1, 0, 0, 1): exact p = P(|mean of +-1, 0, 0, +-1| >= 0.5) = 2/4
    assert r.p_value == pytest.approx(0.5)
    with pytest.raises(StatsError, match="share no sample ids"):
        compare_paired({"x": 1.0}, {"y": 1.0})


def test_clear_difference_is_significant_and_ci_covers_it():
    rng = np.random.default_rng(3)
    ids = [f"s{i}" for i in range(400)]
    a = {i: float(rng.random() < 0.7) for i in ids}
    b = {i: float(rng.random() < 0.5) for i in ids}
    for test in ("permutation", "bootstrap"):
        r = compare_paired(a, b, test=test, n_resamples=5000)
        assert r.p_value < 0.001 and r.significant
        assert r.ci_low < r.diff < r.ci_high and r.ci_low > 0
    same = compare_paired(a, dict(a), n_resamples=2000)
    assert same.diff == 0 and same.p_value == 1.0


def test_winner_is_the_higher_mean_or_the_lower_one_where_lower_is_better():
    rng = np.random.default_rng(4)
    ids = [f"s{i}" for i in range(60)]
    low = {i: 0.5 + 0.1 * rng.random() for i in ids}
    high = {i: v + 0.05 + 0.02 * rng.random() for i, v in low.items()}
    assert compare_paired(high, low, metric="acc").winner == "a"
    assert compare_paired(low, high, metric="acc").winner == "b"
    assert compare_paired(high, low, metric="bits_per_byte").winner == "b"  # fewer bits per byte wins
    assert compare_paired(low, high, metric="bits_per_byte").winner == "a"
    noise = {i: v + 0.01 * rng.standard_normal() for i, v in low.items()}
    unclear = compare_paired(noise, low, metric="bits_per_byte", n_resamples=2000)
    assert not unclear.significant and unclear.winner is None


def test_bootstrap_p_is_uniformish_under_null():
    # under no difference, p < 0.05 about 5% of the time (not 0%, not 30%)
    rng = np.random.default_rng(4)
    rejections = sum(paired_bootstrap(rng.normal(0, 1, 50), n_resamples=1000, seed=k)[3] < 0.05 for k in range(200))
    assert 2 <= rejections <= 25


def test_bootstrap_p_when_every_difference_is_the_same_is_the_sign_flip_tests():
    # the centred resamples of equal differences never move: p would be 1/(B+1) at any n
    assert paired_bootstrap([1.0])[3] == 1.0
    assert paired_bootstrap([1.0, 1.0, 1.0])[3] == pytest.approx(0.25)
    assert paired_bootstrap([0.5] * 12)[3] == pytest.approx(2 / 2**12)


def test_minimum_detectable_difference_formula_and_power():
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert z == pytest.approx(2.8016, abs=1e-4)
    assert minimum_detectable_difference(1000, paired=False) == pytest.approx(z * math.sqrt(0.5 / 1000))
    assert minimum_detectable_difference(1000, paired=False) == pytest.approx(0.0626, abs=1e-4)
    assert minimum_detectable_difference(400, paired=True, sd_diff=0.5) == pytest.approx(z * 0.5 / 20)
    assert minimum_detectable_difference(400, paired=True, discordance=0.2) == pytest.approx(z * math.sqrt(0.2 / 400))
    assert minimum_detectable_difference(0) == math.inf
    # the promise: a true difference of MDD is detected ~80% of the time (unpaired, p = 0.5)
    n = 500
    mdd = minimum_detectable_difference(n, paired=False)
    rng = np.random.default_rng(0)
    x = rng.random((2000, n)) < 0.5 - mdd / 2
    y = rng.random((2000, n)) < 0.5 + mdd / 2
    pooled = (x.mean(1) + y.mean(1)) / 2
    zstat = (y.mean(1) - x.mean(1)) / np.sqrt(2 * pooled * (1 - pooled) / n)
    power = float(np.mean(np.abs(zstat) > sps.norm.ppf(0.975)))
    assert power == pytest.approx(0.8, abs=0.04)


def test_headline_is_macro_mean_with_within_task_ci():
    per_task = {"big": [1.0] * 900 + [0.0] * 100, "small": [1.0, 0.0, 0.0, 0.0]}
    h = headline_score(per_task, seed=0, metrics={"big": "acc", "small": "acc"})
    # macro: (0.9 + 0.25) / 2, not the pooled 901/1004
    assert h.value == pytest.approx(0.575)
    assert h.per_task == {"big": pytest.approx(0.9), "small": pytest.approx(0.25)}
    assert h.n_tasks == 2 and h.n_items == 1004
    assert h.ci_low < h.value < h.ci_high
    # the 4-item task dominates the uncertainty: the CI is about half of its own CI width
    assert 0.15 < h.ci_high - h.ci_low < 0.55
    steady = headline_score({"a": [1.0] * 50, "b": [0.0] * 50})
    assert (steady.value, steady.ci_low, steady.ci_high) == (0.5, 0.5, 0.5)
    with pytest.raises(StatsError, match="no scored items"):
        headline_score({"a": []})


def test_primary_metric_is_first_unless_configured():
    assert primary_metric(["exact_match", "f1"]) == "exact_match"
    assert primary_metric(["exact_match", "f1"], "f1") == "f1"
    with pytest.raises(StatsError, match="'bleu' is not among"):
        primary_metric(["exact_match"], "bleu")
