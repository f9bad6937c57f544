"""Law of the Weakest Link: classification of cross scores, counts, positions and averages."""

from __future__ import annotations

import pytest

from capeval.analysis.weakest_link import (
    CROSSEVAL_CROSS,
    CROSSEVAL_INDIVIDUAL,
    WeakestLinkError,
    classify,
    cross_parts,
    weakest_link,
)

HAND = {
    "m1": {
        "Coding": 80, "Reasoning": 60, "Tool Use": 70, "Image Recognition": 62, "Spanish": 90, "Long Context": 40,
        "Coding & Reasoning": 50,             # below both (weaker 60)
        "Tool Use & Coding": 72,              # 70..80, midpoint 75: closer to weaker
        "Tool Use & Reasoning": 66,           # 60..70, midpoint 65: closer to stronger
        "Image Recognition & Reasoning": 61,  # parts differ by 2 <= 3: no weaker/stronger
        "Spanish & Reasoning": 95,            # above both (stronger 90)
        "Long Context & Coding": 60,          # exactly the midpoint of 40..80: counts as stronger side
    },
    "m2": {"Spanish": 70, "Spanish & Image Recognition": 55},  # a part is missing
}


def test_hand_built_table():
    res = weakest_link(HAND)
    cases = {(c.model, c.cross): c for c in res.cases}
    assert res.n_cases == 5 and res.n_within_threshold == 1
    assert cases[("m1", "Coding & Reasoning")].category == "below_both"
    assert cases[("m1", "Coding & Reasoning")].position == pytest.approx(-0.5)
    tc = cases[("m1", "Tool Use & Coding")]
    assert (tc.weaker, tc.stronger, tc.category) == ("Tool Use", "Coding", "closer_to_weaker")
    assert tc.position == pytest.approx(0.2)
    assert cases[("m1", "Tool Use & Reasoning")].category == "closer_to_stronger"
    assert cases[("m1", "Tool Use & Reasoning")].weaker == "Reasoning"
    assert cases[("m1", "Spanish & Reasoning")].category == "above_both"
    assert cases[("m1", "Spanish & Reasoning")].position == pytest.approx(35 / 30)
    assert cases[("m1", "Long Context & Coding")].category == "closer_to_stronger"
    assert res.counts == {"below_both": 1, "closer_to_weaker": 1, "closer_to_stronger": 2, "above_both": 1}
    assert res.per_model["m2"] == {"below_both": 0, "closer_to_weaker": 0, "closer_to_stronger": 0, "above_both": 0}
    assert res.missing == ("m2: Spanish & Image Recognition (missing part Image Recognition)",)
    avg = {a.model: a for a in res.averages}
    assert avg["m1"].mean_individual == pytest.approx(402 / 6)
    assert avg["m1"].mean_cross == pytest.approx(404 / 6)
    assert (avg["m1"].n_individual, avg["m1"].n_cross) == (6, 6)
    assert sorted(res.positions) == pytest.approx(sorted([-0.5, 0.2, 0.6, 35 / 30, 0.5]))


def test_threshold_is_strict_and_configurable():
    # Tool Use & Coding's parts differ by exactly 10: a case at threshold 3, not at 10
    assert ("m1", "Tool Use & Coding") not in {(c.model, c.cross) for c in weakest_link(HAND, threshold=10).cases}
    assert weakest_link(HAND, threshold=1).n_within_threshold == 0


def paper_shaped_table() -> dict[str, dict[str, float]]:
    """17 models on CrossEval's 14 capabilities, built so that 58 (model, cross) pairs have
    parts more than 3 points apart, 38 of them below both and 20 closer to the weaker, as in
    the paper (arXiv 2409.19951, section 4)."""
    table: dict[str, dict[str, float]] = {}
    k = 0
    for i in range(17):
        ind = {c: 60.0 + (i % 3) for c in CROSSEVAL_INDIVIDUAL}
        if i < 10:
            ind["Reasoning"] += 12  # 4 crosses involve Reasoning
        elif i < 16:
            ind["Coding"] += 12  # 3 crosses involve Coding
        caps = dict(ind)
        for cross in CROSSEVAL_CROSS:
            a, b = (ind[p] for p in cross_parts(cross))
            lo = min(a, b)
            if abs(a - b) > 3:
                caps[cross] = lo - 4 if k < 38 else lo + 3  # below both, then 3/12 of the way up
                k += 1
            else:
                caps[cross] = lo - 1
        table[f"model-{i:02d}"] = caps
    return table


def test_paper_shaped_counts():
    res = weakest_link(paper_shaped_table())
    assert res.n_cases == 58
    assert res.counts == {"below_both": 38, "closer_to_weaker": 20, "closer_to_stronger": 0, "above_both": 0}
    assert res.n_within_threshold == 17 * 7 - 58
    assert res.mean_cross < res.mean_individual
    assert all(p < 0.5 for p in res.positions)


def test_cross_parts_and_classify():
    assert cross_parts("Spanish & Image Recognition") == ("Spanish", "Image Recognition")
    assert cross_parts("Coding") is None
    with pytest.raises(WeakestLinkError, match="exactly two"):
        cross_parts("A & B & C")
    assert classify(10, 20, 40) == "below_both"
    assert classify(20, 20, 40) == "closer_to_weaker"
    assert classify(41, 20, 40) == "above_both"
    with pytest.raises(WeakestLinkError, match="no capability scores"):
        weakest_link({})
