"""Cohen's kappa and Krippendorff's alpha against hand-computed values and reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from capeval.analysis.agreement import annotator_labels, cohen_kappa, krippendorff_alpha, rating_agreement

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C: 4 coders, 12 units,
# None = not coded. The paper works the example by hand: nominal 0.743, ordinal 0.815, interval 0.849.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def units_of(coders: list[list[int | None]]) -> list[list[float]]:
    return [[c[u] for c in coders if c[u] is not None] for u in range(len(coders[0]))]


def test_cohen_kappa_of_a_worked_example() -> None:
    # 50 items: both yes 20, both no 15, A yes B no 5, A no B yes 10: p_o = 0.7, p_e = 0.5, kappa 0.4
    a = ["yes"] * 20 + ["no"] * 15 + ["yes"] * 5 + ["no"] * 10
    b = ["yes"] * 20 + ["no"] * 15 + ["no"] * 5 + ["yes"] * 10
    assert cohen_kappa(a, b) == pytest.approx(0.4, rel=1e-12)


def test_weighted_kappa_counts_how_far_apart_the_labels_are() -> None:
    # one disagreement (2 vs 3) of three items; expected matrix rows [1/3, 0, 2/3] each.
    # unweighted: 1 - 1/2; quadratic: sum w*E = 8/3 + 1 + 4/3 = 5, so 1 - 1/5; linear: sum w*E = 4/3 + 1 + 2/3 = 3, so 1 - 1/3
    a, b = [1, 2, 3], [1, 3, 3]
    assert cohen_kappa(a, b) == pytest.approx(0.5, rel=1e-12)
    assert cohen_kappa(a, b, weights="quadratic") == pytest.approx(0.8, rel=1e-12)
    assert cohen_kappa(a, b, weights="linear") == pytest.approx(1 - 1 / 3, rel=1e-12)
    # the 1-5 scale puts unused categories in between: 1 vs 5 is four steps, not one
    assert cohen_kappa([1, 5, 1, 5], [5, 1, 1, 5], categories=[1, 2, 3, 4, 5], weights="linear") == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(cohen_kappa([3, 3], [3, 3]))  # chance agreement is 1: undefined
    assert math.isnan(cohen_kappa([], []))
    with pytest.raises(ValueError, match="same items"):
        cohen_kappa([1, 2], [1])
    with pytest.raises(ValueError, match="not one of the categories"):
        cohen_kappa([1, 6], [1, 2], categories=[1, 2, 3, 4, 5])


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_equals_sklearn(weights) -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    for n in (5, 40, 300):
        a = rng.integers(1, 6, n)
        b = np.clip(a + rng.integers(-2, 3, n), 1, 5)  # correlated, as two careful raters are
        ours = cohen_kappa(a.tolist(), b.tolist(), categories=[1, 2, 3, 4, 5], weights=weights)
        ref = sklearn_metrics.cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5], weights=weights)
        assert ours == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize(("level", "paper"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_krippendorff_alpha_of_the_papers_example(level, paper) -> None:
    assert krippendorff_alpha(units_of(KRIPPENDORFF_2011), level) == pytest.approx(paper, abs=5e-4)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_krippendorff_alpha_equals_the_krippendorff_package(level) -> None:
    krippendorff = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(11)
    for n_coders, n_units in ((2, 10), (4, 12), (7, 60)):
        truth = rng.integers(1, 6, n_units)
        data = np.clip(truth[None, :] + rng.integers(-1, 2, (n_coders, n_units)), 1, 5).astype(float)
        data[rng.random(data.shape) < 0.3] = np.nan  # missing ratings, some units left with one value
        units = [[v for v in data[:, u] if not np.isnan(v)] for u in range(n_units)]
        ref = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
        assert krippendorff_alpha(units, level) == pytest.approx(ref, rel=1e-9)
    ref = krippendorff.alpha(reliability_data=np.array(KRIPPENDORFF_2011, dtype=float), level_of_measurement=level)
    assert krippendorff_alpha(units_of(KRIPPENDORFF_2011), level) == pytest.approx(ref, rel=1e-9)


def test_alpha_is_undefined_without_pairable_or_varied_values() -> None:
    assert math.isnan(krippendorff_alpha([[1], [2], [3]]))  # nobody rated the same item twice
    assert math.isnan(krippendorff_alpha([[4, 4], [4, 4, 4]]))  # one value throughout
    assert krippendorff_alpha([[1, 1], [5, 5]], "interval") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha([[1, 2]], "ratio")  # type: ignore[arg-type]


def test_rating_agreement_uses_only_items_rated_by_several_people() -> None:
    rows = [
        ("q1", "ada", 5), ("q1", "grace", 4), ("q1", "linus", 5),
        ("q2", "ada", 1), ("q2", "grace", 2),
        ("q3", "ada", 3), ("q3", "ada", 4), ("q3", "grace", 4),  # ada changed her mind: 4 counts
        ("q4", "linus", 2),  # one rater only: left out
    ]
    got = rating_agreement(rows)
    assert (got.n_items, got.n_ratings, got.n_annotators) == (3, 7, 3)
    assert [(p.annotator_a, p.annotator_b, p.n_items) for p in got.pairs] == [("ada", "grace", 3), ("ada", "linus", 1), ("grace", "linus", 1)]
    ada_grace = got.pairs[0]
    assert ada_grace.kappa == pytest.approx(cohen_kappa([5, 1, 4], [4, 2, 4], [1, 2, 3, 4, 5]))
    assert ada_grace.kappa_quadratic == pytest.approx(cohen_kappa([5, 1, 4], [4, 2, 4], [1, 2, 3, 4, 5], "quadratic"))
    assert got.alpha_ordinal == pytest.approx(krippendorff_alpha([[5, 4, 5], [1, 2], [4, 4]], "ordinal"))
    assert got.alpha_interval == pytest.approx(krippendorff_alpha([[5, 4, 5], [1, 2], [4, 4]], "interval"))
    assert rating_agreement([("q1", "ada", 3)]).n_items == 0


def test_two_people_with_one_name_stay_two_raters() -> None:
    labels = annotator_labels([("a1b2c3d4e5", "Ada"), ("f6e5d4c3b2", "Ada"), ("0123456789abcdef", None), ("77", "Grace")])
    assert labels == {"a1b2c3d4e5": "Ada (a1b2c3)", "f6e5d4c3b2": "Ada (f6e5d4)", "0123456789abcdef": "01234567", "77": "Grace"}
