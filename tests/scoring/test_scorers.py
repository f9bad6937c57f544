"""The benchmark scorers on realistic outputs: the value, the extracted answer and the parsed flag."""

from __future__ import annotations

import pytest

from capeval.scoring import SCORERS, bbh_scorer, drop_scorer, gsm8k_scorer, math_scorer
from capeval.types import Response, Sample

GSM8K_GOLD = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18"


def _score(scorer, target, text, error=None):
    sample = Sample("s1", "t", {}, target)
    return scorer(sample, [Response(text=text, error=error)], None)


def test_gsm8k_takes_the_answer_to_the_question_asked() -> None:
    # lm-eval issue 2707 / lighteval 202, 686: the model invents further Q/A pairs after answering
    text = (
        "Janet has 16 - 3 - 4 = 9 eggs left. She sells them for 9 * 2 = 18 dollars. The answer is 18.\n\n"
        "Question: A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts?\n"
        "Answer: 2 + 1 = 3. The answer is 3.\n#### 3"
    )
    s = _score(gsm8k_scorer(), GSM8K_GOLD, text)
    assert (s.values, s.extracted, s.parsed, s.target) == ({"exact_match": 1.0}, "18", True, "18")


@pytest.mark.parametrize(
    "text,extracted,value",
    [
        ("She makes $18.00 per day.\n#### 18", "18", 1.0),
        ("Answer: first 16 - 7 = 9, then 9 * 2 = \\boxed{18}", "18", 1.0),
        ("<think>maybe 20?</think>So she makes 18 dollars a day.", "18", 1.0),
        ("The answer is 20.", "20", 0.0),
        ("I do not know.", None, 0.0),
    ],
)
def test_gsm8k_forms(text: str, extracted: str | None, value: float) -> None:
    s = _score(gsm8k_scorer(), "18", text)
    assert (s.extracted, s.values["exact_match"], s.parsed) == (extracted, value, extracted is not None)


def test_failed_call_is_unparsed_not_wrong_text() -> None:
    s = _score(gsm8k_scorer(), "18", None, error="timeout after 3 retries")
    assert s.parsed is False and s.extracted is None and s.metadata["error"].startswith("timeout")


@pytest.mark.parametrize(
    "target,text,extracted,value",
    [
        ("(B)", "Let's think step by step. The third option fits. So the answer is (B).", "(B)", 1.0),
        ("(B)", "So the answer is B.", "(B)", 1.0),
        ("(B)", "So the answer is (C).", "(C)", 0.0),
        ("True", "not ( True ) is False, so the whole is True. So the answer is True.", "True", 1.0),
        ("No", "Step by step... So the answer is no.", "No", 1.0),
        ("invalid", "The argument is fallacious. So the answer is invalid.", "invalid", 1.0),
        ("24", "12 + 12 = 24. So the answer is 24.", "24", 1.0),
        ("] ) }", "We close in reverse order. So the answer is ] ) }.", "] ) }", 1.0),
        ("apple banana cherry", "Sorted: So the answer is apple banana cherry.", "apple banana cherry", 1.0),
        ("(A)", "Hmm, it is hard to say.\nI need to compare more.", None, 0.0),
        ("(A)", "Comparing the options,\n(A) is the one that fits.", "(A)", 1.0),  # no marker: the letter given
        ("valid", "So the answer is valid.\n\nQ: next question\nA: So the answer is invalid.", "valid", 1.0),
        ("(B)", "So the answer is (b).", "(B)", 1.0),  # a lower-case option letter after the marker
        ("(I)", "The ninth shape fits. So the answer is I.", "(I)", 1.0),  # "I" alone is option I
        ("(B)", "Answer: I think it is (B).", "(B)", 1.0),  # "I think" is not option I
        ("-12", "(3 - 9) * 2 = -12. So the answer is -12.", "-12", 1.0),
        ("-12", "So the answer is \u221212.", "-12", 1.0),
        ("-12", "So the answer is 12.", "12", 0.0),
        ("24", "So the answer is 24 because 24 = 4 x 6.", "24", 1.0),  # the '=' is a justification
        ("24", "So the answer is 48 - 20 = 24.", "24", 1.0),  # the answer is an equation
    ],
)
def test_bbh(target: str, text: str, extracted: str | None, value: float) -> None:
    s = _score(bbh_scorer(), target, text)
    assert (s.extracted, s.values["exact_match"]) == (extracted, value)


def test_drop_scorer_reports_em_and_f1() -> None:
    s = _score(drop_scorer(), [["New England Patriots"], ["Patriots"]], "Looking at the passage... So the answer is the Patriots.")
    assert s.values == {"em": 1.0, "f1": 1.0} and s.extracted == "the Patriots"
    s = _score(drop_scorer(), ["4"], "3\n\nPassage: another one")
    assert s.values == {"em": 0.0, "f1": 0.0} and s.extracted == "3"
    s = _score(drop_scorer(), "Tom Brady", "Answer: Brady")
    assert s.values == {"em": 0.0, "f1": 0.67}


@pytest.mark.parametrize(
    "gold,text",
    [
        ("St. Louis Rams", "The answer is St. Louis Rams."),
        ("Dr. Smith", "Answer: Dr. Smith"),
        ("Washington D.C. Redskins", "The answer is Washington D.C. Redskins"),
    ],
)
def test_drop_answer_does_not_end_at_an_abbreviation(gold: str, text: str) -> None:
    s = _score(drop_scorer(), [[gold]], text)
    assert (s.extracted, s.values) == (gold, {"em": 1.0, "f1": 1.0})


def test_math_scorer_compares_values_not_strings() -> None:
    gold = "The sum is $\\frac{1}{2} + \\frac{1}{4} = \\boxed{\\frac{3}{4}}$."
    s = _score(math_scorer(), gold, "Adding, we get $0.75$. Final Answer: The final answer is $0.75$. I hope it is correct.")
    assert (s.values, s.extracted, s.target) == ({"equiv": 1.0}, "0.75", "\\frac{3}{4}")
    s = _score(math_scorer(), "\\frac{3}{4}", "So the result is \\boxed{\\dfrac{3}{4}}.")
    assert s.values["equiv"] == 1.0
    s = _score(math_scorer(), "\\frac{3}{4}", "I could not finish.")
    assert (s.parsed, s.values["equiv"]) == (False, 0.0)


def test_scorers_are_registered_by_name() -> None:
    for name in ("gsm8k", "math", "bbh", "drop", "humaneval"):
        assert callable(SCORERS[name]())
