"""Aggregation: means with bootstrap CIs, and small-n warnings that hold even at 0/n."""

import pytest

from capeval.analysis.stats import wilson_interval
from capeval.engine import aggregate
from capeval.types import Score


def _scores(values):
    return [Score(str(i), "t", {"acc": v}) for i, v in enumerate(values)]


def test_all_zero_accuracy_on_20_items_still_warns():
    (m,) = aggregate("t", _scores([0.0] * 20))
    assert (m.value, m.ci_low, m.ci_high, m.n) == (0.0, 0.0, 0.0, 20)
    assert m.warning and "n=20 is small" in m.warning and "+/-8.1 points" in m.warning


def test_large_n_has_no_warning_and_a_ci_around_the_mean():
    (m,) = aggregate("t", _scores([1.0, 0.0] * 1000))
    assert m.value == 0.5 and m.ci_low < 0.5 < m.ci_high and m.warning is None


def test_wilson_interval_matches_the_closed_form():
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=1e-4)
    lo, hi = wilson_interval(10, 20)
    assert lo == pytest.approx(0.2993, abs=1e-4) and hi == pytest.approx(0.7007, abs=1e-4)


def test_a_judge_scale_warning_reads_the_ci_in_points_of_its_own_scale():
    import numpy as np

    rng = np.random.default_rng(0)
    # 1,400 CrossEval scores on 1-100: a CI of a couple of points, nothing to warn about
    scores = [Score(str(i), "crosseval", {"score_100": float(v)}) for i, v in enumerate(rng.choice([1.0, 25.75, 50.5, 75.25, 100.0], 1400))]
    (m,) = aggregate("crosseval", scores)
    assert m.warning is None, m.warning
    # 20 1-5 ratings: the width is read on the 4 points from 1 to 5
    ratings = [Score(str(i), "t", {"rating": float(1 + i % 5)}) for i in range(20)]
    (r,) = aggregate("t", ratings)
    half = (r.ci_high - r.ci_low) / 2 / 4 * 100
    assert r.warning and f"+/-{half:.1f} points" in r.warning
