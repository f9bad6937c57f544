"""pass@k against the closed form, DROP EM/F1 as the official script computes them, MATH equivalence."""

from __future__ import annotations

import sys
from math import comb

import pytest

from capeval.errors import CapevalError
from capeval.scoring import metrics
from capeval.scoring.metrics import (
    drop_em_f1,
    drop_max_em_f1,
    math_equivalent,
    normalize_math_string,
    pass_at_k,
)


@pytest.mark.parametrize("n,c,k", [(n, c, k) for n in (1, 5, 20) for c in range(0, n + 1, max(1, n // 4)) for k in (1, 2, 5) if k <= n])
def test_pass_at_k_matches_the_closed_form(n: int, c: int, k: int) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_pass_at_k_known_values_and_errors() -> None:
    assert pass_at_k(10, 1, 1) == pytest.approx(0.1)
    assert pass_at_k(10, 1, 5) == pytest.approx(0.5)
    assert pass_at_k(200, 0, 100) == 0.0
    assert pass_at_k(200, 101, 100) == 1.0
    assert 0.0 < pass_at_k(1000, 3, 100) < 1.0  # large n does not overflow
    with pytest.raises(ValueError, match="at least 10 samples"):
        pass_at_k(5, 1, 10)
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)


@pytest.mark.parametrize(
    "prediction,gold,expected",
    [
        ("4", ["4"], (1.0, 1.0)),
        ("the Patriots", ["Patriots"], (1.0, 1.0)),
        ("3.0 yards", ["3 yards"], (1.0, 1.0)),  # numbers compare as floats
        ("Smith.", ["Smith"], (1.0, 1.0)),  # punctuation
        ("two-point conversion", ["two point conversion"], (1.0, 1.0)),  # hyphens split tokens
        ("New England Patriots", ["Patriots"], (0.0, 0.5)),
        ("24 yards", ["42 yards"], (0.0, 0.0)),  # a wrong number scores no F1 at all
        ("four", ["4"], (0.0, 0.0)),
        (["Smith", "Jones"], ["Jones", "Smith"], (1.0, 1.0)),  # bags of spans, any order
        ("Smith", ["Jones", "Smith"], (0.0, 0.5)),  # one of two spans
        ("", ["Smith"], (0.0, 0.0)),
    ],
)
def test_drop_em_f1(prediction, gold, expected) -> None:
    assert drop_em_f1(prediction, gold) == expected


def test_drop_minus_signs_score_as_the_official_script_scores_a_hyphen() -> None:
    # the official tokeniser splits on hyphens, so "-5" equals "5"; U+2212 and en dashes do the same
    assert drop_em_f1("-5", ["5"]) == (1.0, 1.0)
    assert drop_em_f1("\u22125", ["-5"]) == (1.0, 1.0)
    assert drop_em_f1("5\u201310", ["5-10"]) == (1.0, 1.0)


def test_drop_takes_the_best_alternative_answer() -> None:
    assert drop_max_em_f1("4", [["4 touchdowns"], ["4"]]) == (1.0, 1.0)
    assert drop_max_em_f1("Tom Brady", [["Brady"], ["Tom"]]) == (0.0, pytest.approx(0.67))
    assert drop_max_em_f1("x", []) == (0.0, 0.0)


@pytest.mark.parametrize(
    "pred,gold,same",
    [
        ("\\frac{1}{2}", "0.5", True),
        ("1/2", "\\frac12", True),
        ("\\dfrac{3}{4}", "\\frac{3}{4}", True),
        ("x = 5", "5", True),
        ("10\\%", "10", True),
        ("90^\\circ", "90", True),
        ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", True),
        ("(1,2)", "\\left( 1, 2 \\right)", True),
        ("5\\text{ cm}", "5", True),
        ("5", "6", False),
        ("\\frac{2}{4}", "0.5", True),
        ("\\sqrt{8}", "2\\sqrt{2}", True),
        ("\\pi/2", "\\frac{\\pi}{2}", True),
        ("-\\frac{1}{2}", "\\frac{1}{2}", False),
        ("\\frac{1}{", "\\frac{1}{2}", False),
        ("\\frac{1}{3}", "0.33", False),
        (None, "3", False),
    ],
)
def test_math_equivalent(pred, gold, same: bool) -> None:
    assert math_equivalent(pred, gold) is same


def test_math_grader_is_math_verify_and_required(monkeypatch) -> None:
    from importlib import metadata

    assert metrics.math_grader() == f"math-verify {metadata.version('math-verify')}"
    # without math-verify there is no second grader to fall back to: one clear error
    monkeypatch.setitem(sys.modules, "math_verify", None)
    with pytest.raises(CapevalError, match="math-verify, is not installed"):
        math_equivalent("\\frac{2}{4}", "0.5")


@pytest.mark.parametrize(
    "raw,normalized",
    [
        ("\\left( 1, 2 \\right)", "(1,2)"),
        ("5\\text{ cm}", "5"),
        ("0.5", "\\frac{1}{2}"),
        ("\\frac12", "\\frac{1}{2}"),
        ("\\tfrac{3}{4}", "\\frac{3}{4}"),
        ("k = 7", "7"),
        ("\\$18.", "18"),
        ("\\sqrt3", "\\sqrt{3}"),
    ],
)
def test_normalize_math_string(raw: str, normalized: str) -> None:
    assert normalize_math_string(raw) == normalized
