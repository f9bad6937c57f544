"""Answer extraction on awkward, real-looking model outputs: each case pins the exact value read."""

from __future__ import annotations

import pytest

from capeval.scoring.extract import (
    extract_after_answer_is,
    extract_boxed,
    extract_code,
    extract_letter,
    extract_math_answer,
    extract_number,
    first_answer_segment,
    normalize_number,
    strip_reasoning,
)

LETTER_CASES = [
    ("B", 4, "B"),
    ("(C)", 4, "C"),
    ("D. Paris is the capital of France.", 4, "D"),
    ("**B**", 4, "B"),
    ("The answer is (B).", 4, "B"),
    ("The correct answer is: **C) 42**", 4, "C"),
    ("Answer: A", 4, "A"),
    ("A good first step is to rule out (A). The answer is D.", 4, "D"),
    ("Looking at option B and option C, I would pick option C.", 4, "C"),
    ("<think>Maybe (A)? No, (B) fits better.</think>\nThe answer is (C)", 4, "C"),
    ("The answer is E.", 4, None),  # out of range for 4 choices
    ("I am not sure which one is right.", 4, None),
    ("Final answer: \\boxed{B}", 4, "B"),
    ("The answer is (A).\n\nQuestion: Which planet is largest?\nThe answer is (D).", 4, "A"),
    ("answer: b", 4, "B"),
    ("Looking at the options, none of them fits.", 4, None),  # "options," is not option "S"
    ("Between choice (A) and choice (D), choice (D) is right.", 4, "D"),
    # after the marker, a letter that starts a word or a sentence is not an answer
    ("The answer is a prime number, so (C).", 4, "C"),
    ("The answer is a mitochondrion.", 4, None),
    ("Answer: A man walks into a bar.", 4, None),
    ("Answer: I think it is (B).", 26, "B"),
    ("The answer is I don't know.", 26, None),
    ("So the answer is I.", 26, "I"),
    ("So the answer is I", 26, "I"),
    # several letters name no choice, and no later fallback picks one of them
    ("The answer is B or C", 4, None),
    ("The answer is B and C.", 4, None),
    ("The answer is (B) or (C).", 4, None),
    ("Answer: A and B are both wrong, so (C).", 4, "C"),
    # the forms a marker's letter takes
    ("The answer is **C**.", 4, "C"),
    ("The answer is **(c)**", 4, "C"),
    ("**Answer:** B", 4, "B"),
    ("Answer: [C]", 4, "C"),
    ("The answer is B. Paris is the capital.", 4, "B"),
    ("The answer is C: 42", 4, "C"),
    ("The answer is D,", 4, "D"),
    ("The answer is a", 4, "A"),
    ("The answer is d, the heart", 4, None),
    # a capital the answer goes on after, with "A" and "I" only before a word that follows an answer
    ("The answer is B because the heart pumps blood.", 4, "B"),
    ("The answer is B, since it fits.", 4, "B"),
    ("The correct answer is B - Heart", 4, "B"),
    ("The answer is A because it is the largest.", 4, "A"),
    ("The answer is A mitochondrion.", 4, None),
    ("So the answer is I because it fits.", 26, "I"),
    ("So the answer is e.g. the heart", 4, None),
]


@pytest.mark.parametrize("text,n,expected", LETTER_CASES)
def test_extract_letter(text: str, n: int, expected: str | None) -> None:
    assert extract_letter(text, n) == expected


NUMBER_CASES = [
    ("Natalia sold 48/2 = 24 clips in May.\nAltogether she sold 48+24 = 72 clips.\n#### 72", "72"),
    ("The total is $1,234.50.", "1234.5"),
    ("She pays $18 every day at the market.", "18"),
    ("The temperature dropped to -5 degrees.", "-5"),
    ("The answer is −12.", "-12"),
    ("He ran 3.5 km, so the answer is 3.5 km.", "3.5"),
    ("About 75% of the class passed, so the answer is 75%.", "75"),
    ("The answer is 3/4 of the pie.", "0.75"),
    ("The answer is: **1,000**", "1000"),
    ("First 5 apples, then 7 apples, so 12 in all.", "12"),
    ("She has 2 dogs and 3 cats.\n#### 5\n\nQuestion: Tom has 4 pens and buys 6 more.\nAnswer: 4 + 6 = 10\n#### 10", "5"),
    ("So the total is \\boxed{42} dollars.", "42"),
    ("The final answer is $\\boxed{1{,}200}$.", "1200"),
    ("Adding up: 3 + 4 = 7. Then \\boxed{7}. Check: 7 - 2 = 5.", "7"),
    ("<think>Maybe it is 10? No: 4 * 3 = 12.</think>The answer is 12.", "12"),
    ("<think>Let me compute 4 * 3 = 12 and then", None),
    ("The answer is 0.50 dollars.", "0.5"),
    ("Pages 5-6 were torn out, so 6 pages remain... no, the answer is 94.", "94"),
    ("There are no numbers here.", None),
    ("Answer: Let's think step by step. 6 * 7 = 42 and 42 - 2 = 40. The answer is 40.", "40"),
    ("The answer is \\frac{3}{4}", "0.75"),
    ("He earns $ 2,500 per month.\n#### $2,500", "2500"),
]

# The sign on every path that reads a number (issue 10: "The answer is -10." was read as 10).
SIGN_CASES = [
    ("11 - 39 = -28 degrees. #### -28", "-28"),
    ("#### - 28", "-28"),
    ("#### \u221228", "-28"),
    ("It fell to -28. So the answer is -10.", "-10"),
    ("The answer is \u221210.", "-10"),
    ("The answer is \u201310.", "-10"),
    ("The answer is - 10 dollars.", "-10"),
    ("The final answer is: -4", "-4"),
    ("Answer: -10", "-10"),
    ("Answer: $-12$", "-12"),
    ("answer = -0.5", "-0.5"),
    ("So the balance is \\boxed{-19} dollars.", "-19"),
    ("\\boxed{\u2212\\frac{1}{2}}", "-0.5"),
    ("\\boxed{- \\frac{3}{4}}", "-0.75"),
    ("The answer is -$12.", "-12"),
    ("The answer is $-12.", "-12"),
    ("The temperature at midnight was -7 degrees.", "-7"),
    ("It was \u22123.5 degrees at dawn.", "-3.5"),
    ("The temperature is negative 10 degrees.", "-10"),
    ("The answer is minus 3.", "-3"),
    # a subtraction and a range are not signs
    ("20 minus 5 is 15", "15"),
    ("Total: 20 - 5", "5"),
    ("Read pages 5\u201310", "10"),
    ("The answer is 7 - 10 = -3.", "-3"),
    ("So \\boxed{2 + 3 = 5}", "5"),
    # spelled-out numbers are not read
    ("The answer is negative ten.", None),
]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("The answer is $-3$.", "-3"),
        ("Thus $\\boxed{-\\frac{4}{7}}$", "-\\frac{4}{7}"),
        ("The final answer is \u22125.", "-5"),
        ("The final answer is \u20135.", "-5"),
        # the last $...$ counts only when the response ends on it (corpus: smollm2 math_algebra/44)
        ("So $x = -3$.", "x = -3"),
        ("To find the value of $(8 - 12)^3$, we can use the binomial theorem.", None),
        ("It meets the parabola at $(x, 12)$ and $(x, 12)$ respectively.", None),
    ],
)
def test_extract_math_answer_keeps_the_sign(text: str, expected: str | None) -> None:
    assert extract_math_answer(text) == expected


@pytest.mark.parametrize("text,expected", SIGN_CASES)
def test_extract_number_keeps_the_sign(text: str, expected: str | None) -> None:
    assert extract_number(first_answer_segment(text)) == expected


@pytest.mark.parametrize("text,expected", NUMBER_CASES)
def test_extract_number(text: str, expected: str | None) -> None:
    # GSM8K-style reading: the run-on continuation is cut first, as the scorer does
    assert extract_number(first_answer_segment(text)) == expected


# After a marker, an "=" gives the result only when the answer is an equation (arithmetic before
# it); an "=" in a justification does not (lm-eval's gsm8k-cot strict-match reads 60 and 24 too).
EQUATION_CASES = [
    ("The answer is 60, since 60 = 3 * 20.", "60"),
    ("The answer is 24 because 24 = 4 x 6.", "24"),
    ("He needs 3 * 20 = 60 minutes in all. The answer is 60 (=3*20).", "60"),
    ("The answer is 12 because 2 * 6 = 12 and 12 = 3 + 9.", "12"),
    ("The answer is 2 * 6 = 12 and 12 = 3 + 9.", "12"),
    ("The answer is 48 - 20 = 24 degrees.", "24"),
    ("The answer is (48 - 20) = 28.", "28"),
    ("The answer is $4 x 6 = $24.", "24"),
    ("The answer is 3 × 4 = 12 = 12.", "12"),
    ("The answer is x = 5.", "5"),
    ("\\boxed{\\frac{6}{8} = \\frac{3}{4}}", "0.75"),
]


@pytest.mark.parametrize("text,expected", EQUATION_CASES)
def test_extract_number_reads_an_equation_only_when_the_answer_is_one(text: str, expected: str) -> None:
    assert extract_number(first_answer_segment(text)) == expected


BOXED_CASES = [
    ("so x = \\boxed{5}", "5"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("first \\boxed{2}, corrected: \\boxed{\\sqrt{3}}", "\\sqrt{3}"),
    ("$\\boxed{(1, \\{2\\})}$", "(1, \\{2\\})"),
    ("The answer is \\boxed 7.", "7"),
    ("\\fbox{x^{2}}", "x^{2}"),
    ("no box here", None),
    ("\\boxed{unclosed", None),
]


@pytest.mark.parametrize("text,expected", BOXED_CASES)
def test_extract_boxed(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


MATH_CASES = [
    ("Final Answer: The final answer is $\\frac{3}{5}$. I hope it is correct.", "\\frac{3}{5}"),
    ("Thus the area is $\\boxed{12\\pi}$.", "12\\pi"),
    ("So we get $x = 2$ and then $y = 3$.", "y = 3"),
    ("<think>guess \\boxed{1}</think> The answer is $4$.", "4"),
    ("I could not solve it.", None),
]


@pytest.mark.parametrize("text,expected", MATH_CASES)
def test_extract_math_answer(text: str, expected: str | None) -> None:
    assert extract_math_answer(text) == expected


ANSWER_IS_CASES = [
    ("So the answer is True.", "True"),
    ("Let's think step by step... So the answer is (B). That settles it.", "(B)"),
    ("Answer: Let me think.\nThe dog is brown.\nThe answer is valid.", "valid"),
    ("The final answer is **No**", "No"),
    ("Answer:", None),
    # a period after an abbreviation or an initial does not end the answer
    ("The answer is St. Louis Rams.", "St. Louis Rams"),
    ("Answer: Dr. Smith", "Dr. Smith"),
    ("The answer is Washington D.C. Redskins", "Washington D.C. Redskins"),
    ("The answer is J. R. R. Tolkien. He wrote it.", "J. R. R. Tolkien"),
    ("The answer is Tom. He threw it.", "Tom"),
    ("The answer is 3.5. I hope it is right.", "3.5"),
]


@pytest.mark.parametrize("text,expected", ANSWER_IS_CASES)
def test_extract_after_answer_is(text: str, expected: str | None) -> None:
    assert extract_after_answer_is(text) == expected


SEGMENT_CASES = [
    ("18\n\nQuestion: What is 2+2?\nAnswer: 4", "18"),
    ("The answer is 7.\nQ: next one\nA: 9", "The answer is 7."),
    ("Done: 3<|im_end|>garbage", "Done: 3"),
    ("Question: restated question here\nSo the answer is 5.", "Question: restated question here\nSo the answer is 5."),
    ("x is 4.\n\n**Problem 2:** find y", "x is 4."),
    ("So the answer is 3.\n\nPassage: The Bears scored twice...\nSo the answer is 5.", "So the answer is 3."),
]


@pytest.mark.parametrize("text,expected", SEGMENT_CASES)
def test_first_answer_segment(text: str, expected: str) -> None:
    assert first_answer_segment(text) == expected


def test_strip_reasoning_forms() -> None:
    assert strip_reasoning("<think>a</think>B<think>c</think>D") == "BD"
    assert strip_reasoning("reasoning that began in the prompt</think>\nFinal: 3") == "Final: 3"
    assert strip_reasoning("<THINK>never closed") == ""


CODE_CASES = [
    # fenced with language, prose around
    (
        "Here is the solution:\n```python\ndef add(a, b):\n    return a + b\n```\nThis adds two numbers.",
        "add",
        "def add(a, b):\n    return a + b\n",
    ),
    # fenced without a language tag
    ("```\ndef add(a, b):\n    return a+b\n```", "add", "def add(a, b):\n    return a+b\n"),
    # several blocks: the solution, then a usage example that does not redefine it
    (
        "```python\ndef add(a, b):\n    return a + b\n```\nUsage:\n```python\nprint(add(1, 2))\n```",
        "add",
        "def add(a, b):\n    return a + b\n",
    ),
    # a draft and a corrected version: the last block defining the entry point wins
    (
        "First try:\n```py\ndef add(a, b):\n    return a - b\n```\nOops, fixed:\n```py\ndef add(a, b):\n    return a + b\n```",
        "add",
        "def add(a, b):\n    return a + b\n",
    ),
    # a shell block is not the program
    (
        "```bash\npip install nothing\n```\n```python\nimport math\ndef root(x):\n    return math.sqrt(x)\n```",
        "root",
        "import math\ndef root(x):\n    return math.sqrt(x)\n",
    ),
    # unfenced code with prose before and after
    (
        "Sure! Here's how:\n\nfrom typing import List\ndef total(xs: List[int]) -> int:\n    s = 0\n    for x in xs:\n        s += x\n    return s\n\nThis loops over the list and sums it.",
        "total",
        "from typing import List\ndef total(xs: List[int]) -> int:\n    s = 0\n    for x in xs:\n        s += x\n    return s\n",
    ),
    # a plain completion continuing the prompt's body is kept whole
    ("    return a + b\n", "add", "    return a + b\n"),
    # an unclosed fence (the model hit its token limit)
    ("```python\ndef add(a, b):\n    return a + b\n", "add", "def add(a, b):\n    return a + b\n"),
    # reasoning first, then the code
    (
        "<think>maybe a loop? no, built-in sum</think>\n```python\ndef total(xs):\n    return sum(xs)\n```",
        "total",
        "def total(xs):\n    return sum(xs)\n",
    ),
]


@pytest.mark.parametrize("text,entry_point,expected", CODE_CASES)
def test_extract_code(text: str, entry_point: str, expected: str) -> None:
    assert extract_code(text, entry_point) == expected


@pytest.mark.parametrize(
    "raw,expected",
    [("$1,000.00", "1000"), ("3/4", "0.75"), ("-.5", "-0.5"), ("12%", "12"), ("abc", None), ("1/0", None)],
)
def test_normalize_number(raw: str, expected: str | None) -> None:
    assert normalize_number(raw) == expected


def test_table_is_large_enough() -> None:
    total = (
        len(LETTER_CASES) + len(NUMBER_CASES) + len(BOXED_CASES) + len(MATH_CASES)
        + len(ANSWER_IS_CASES) + len(SEGMENT_CASES) + len(CODE_CASES)
    )
    assert total >= 60
