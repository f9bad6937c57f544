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
