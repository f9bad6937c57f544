"""Answer extraction: read the answer a model gave out of its raw output.

Every reader returns None when no answer can be read, so a run can report an unparsed rate apart
from wrong answers. The order of preference in each reader follows what the benchmark's own
graders accept: an explicit answer marker ("####", "the answer is", \\boxed{}) beats a number or
letter that merely appears last.
"""

from __future__ import annotations

import math
import re

# ---- reasoning blocks and run-on continuations ---------------------------------------------------

_THINK_BLOCK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)


def strip_reasoning(text: str) -> str:
    """Drop the <think>...</think> blocks of reasoning models before reading an answer.

    An unclosed block runs to the end (the model ran out of tokens while thinking, so there is no
    answer). A lone closing tag (templates that put "<think>" in the prompt) drops everything
    before it."""
    text = _THINK_BLOCK.sub("", text)
    close = list(_THINK_CLOSE.finditer(text))
    if close:
        text = text[close[-1].end() :]
    return text.strip()


# A new exemplar-style question the model invented after answering (lm-eval issue 2707, lighteval
# issues 202 and 686): everything from it on is not an answer to the question that was asked.
_RUN_ON = re.compile(
    r"\n[ \t]*(?:#+\s*|\*\*)?(?:Question|Q|Problem|Query|Exercise|Passage)\s*(?:\d+\s*)?[:.：]"
    r"|<\|im_end\|>|<\|endoftext\|>|<\|eot_id\|>|</s>|<end_of_turn>",
    re.IGNORECASE,
)


def first_answer_segment(text: str) -> str:
    """The part of an output that answers the question asked: cut where the model starts a new
    "Question:" / "Q:" / "Problem:" / "Passage:" (DROP) of its own, or emits an end-of-turn token
    as text."""
    text = strip_reasoning(text)
    m = _RUN_ON.search(text)
    return text[: m.start()].strip() if m else text


# ---- \boxed{} -------------------------------------------------------------------------------------

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")


def _braced(text: str, open_at: int) -> str | None:
    """The content of the brace group opening at text[open_at] == "{", nested braces included."""
    depth = 0
    for i in range(open_at, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    return None


def extract_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (or \\fbox{...}), nested braces kept:
    "\\boxed{\\frac{1}{2}}" -> "\\frac{1}{2}". The brace-less "\\boxed 5" form is read too."""
    for m in reversed(list(_BOXED.finditer(text))):
        end = m.end()
        if end < len(text) and text[end] == "{":
            inner = _braced(text, end)
            if inner is not None:
                return inner.strip()
        else:
            bare = re.match(r"([^\s$]+)", text[end:])
            if bare:
                return bare.group(1).rstrip(".,;")
    return None


# ---- "the answer is" -----------------------------------------------------------------------------

# No dash in the separator: "The answer is -10" keeps its minus sign.
_ANSWER_IS = re.compile(
    r"(?:final\s+answer|answer)\s*(?:is|:|=|would\s+be|should\s+be)\s*:?[ \t]*",
    re.IGNORECASE,
)


# A period that does not end the answer: after a single-letter initial ("D.C. Redskins", "J. R. R.
# Tolkien") or a title or place abbreviation ("St. Louis Rams", "Dr. Smith"). A list, not every short
# capitalised word: "The answer is Tom. He threw it." ends at "Tom".
_ABBREVIATION = re.compile(
    r"(?<![A-Za-z])(?:[A-Z]|St|Ste|Dr|Mr|Mrs|Ms|Mme|Jr|Sr|Mt|Ft|Pt|Lt|Gen|Col|Maj|Sgt|Capt|Cmdr|Adm|"
    r"Gov|Sen|Rep|Rev|Prof|Pres|Hon|Inc|Ltd|Co|Corp|Bros|Ave|Blvd|Rd|vs)$"
)


def _sentence(s: str) -> str:
    """`s` up to the end of its first sentence: a period followed by a space or the end, not one in
    a number ("3.5. I hope" -> "3.5") nor one after an abbreviation ("St. Louis Rams." -> "St. Louis
    Rams")."""
    for m in re.finditer(r"\.(?:\s|$)", s):
        if not _ABBREVIATION.search(s, 0, m.start()):
            return s[: m.start()]
    return s


def _trim_answer(s: str) -> str:
    s = s.strip()
    if s.startswith("$"):
        close = s.find("$", 1)
        if close > 1 and not re.match(r"\s*\d", s[close + 1 :]):
            return s[: close + 1]
    s = _sentence(s)
    s = s.strip().strip("*_`").strip()
    return s.rstrip(".,;:!").strip().strip("*_").strip()


def extract_after_answer_is(text: str) -> str | None:
    """What follows the last "the answer is" / "Answer:" / "final answer is" on its line, up to
    the end of the sentence: "So the answer is (B)." -> "(B)".

    The last marker with something after it wins, so an early "Answer:" that opens the reasoning
    ("Answer: Let's think...") does not hide the conclusion."""
    text = strip_reasoning(text)
    found: str | None = None
    for m in _ANSWER_IS.finditer(text):
        line = text[m.end() :].split("\n", 1)[0]
        got = _trim_answer(line)
        if got:
            found = got
    return found


# ---- letters -------------------------------------------------------------------------------------

# The letter an answer marker (or \\boxed{}) gives, read from what follows it on its line. Any case
# when bracketed ("(b)", "[C]", "**(C)**"), bold ("**b**") or alone ("b", "b."); a capital also when
# the text goes on after ".", ")", ":" ("C) 42", "B. Paris"), after "," or a dash, or with more words
# ("B because ..."); never a letter that starts a word, an article or a pronoun ("a prime number",
# "A mitochondrion", "I think it is (B)") or one of several ("B or C").
_LETTER_BRACKETED = re.compile(r"\**\s*[\(\[]\s*\**\s*([A-Za-z])\s*\**\s*[\)\]]")
_LETTER_BOLD = re.compile(r"\*\*\s*([A-Za-z])\s*\*\*")
_LETTER_ALONE = re.compile(r"\**\s*([A-Za-z])\s*\**\s*[.!]?\s*$")
_LETTER_CAPITAL = re.compile(r"\**\s*([A-Z])\s*(?:\*\*)?(?:\.(?![A-Za-z])|[):]|\s*,\s*$)")
# a capital the answer goes on after: "B because ...", "B, since ...", "B - Heart"; "A" and "I" only
# before a word that follows an answer ("A because"), not one that follows an article or a pronoun
# ("A prime number", "I think it is (B)")
_LETTER_THEN_WORDS = re.compile(r"\**\s*([A-Z])\s*(?:\*\*)?(?:\s*[,;\-\u2013\u2014]|\s+(?=\S))\s*([A-Za-z]*)")
_AFTER_AN_ANSWER = frozenset({"because", "since", "as", "which", "is", "was", "would", "should", "fits", "matches", "seems"})
_LETTER_ONE_OF = re.compile(r"[\s*.,)\]]*(?:or|and|&|/)(?![A-Za-z])", re.IGNORECASE)
# an answer that is only several letters ("B or C", "(A) and (D).") names no single choice
_ONE_LETTER = r"\**\s*[\(\[]?\s*[A-Za-z]\s*[\)\]]?\s*\**"
_LETTERS_ONLY = re.compile(
    rf"{_ONE_LETTER}(?:\s*(?:,|,?\s*(?:or|and|&|/))\s*{_ONE_LETTER})+\s*[.!]?\s*", re.IGNORECASE
)
_LETTER_LEAD = re.compile(r"^\s*(?:\*\*)?\(?([A-Z])(?:\*\*)?(?:[.):]|\*\*|\s*$|\s+[-–:])")
# the word in any case, the letter in capitals: "options, ..." must not read as option "S"
_LETTER_OPTION = re.compile(r"\b(?i:option|choice)\s*(?:\(([A-Z])\)|([A-Z]))(?![A-Za-z])")
_LETTER_PAREN = re.compile(r"(?<![A-Za-z])\(([A-Z])\)(?![A-Za-z])")


def _answer_letter(s: str | None, valid: set[str]) -> str | None:
    """The choice letter at the start of `s`, the text after an answer marker or inside \\boxed{}
    (see the patterns above); None when `s` does not start with one."""
    if not s:
        return None
    s = s.strip()
    for pat in (_LETTER_BRACKETED, _LETTER_BOLD, _LETTER_ALONE, _LETTER_CAPITAL, _LETTER_THEN_WORDS):
        m = pat.match(s)
        if m:
            letter = m.group(1).upper()
            if letter not in valid or _LETTER_ONE_OF.match(s, m.end(1)):
                return None
            if pat is _LETTER_THEN_WORDS and letter in "AI" and m.group(2)[:1].islower() and m.group(2) not in _AFTER_AN_ANSWER:
                return None
            return letter
    return None


def _after_last_marker(text: str) -> str | None:
    """The rest of the line after the last answer marker that has an answer after it (the marker
    `extract_after_answer_is` reads), untrimmed: brackets, stars and what follows the letter are
    needed to tell "(B) or (C)" and "a mitochondrion" from "B"."""
    found: str | None = None
    for m in _ANSWER_IS.finditer(text):
        line = text[m.end() :].split("\n", 1)[0]
        if _trim_answer(line):
            found = line
    return found


def extract_letter(text: str, n_choices: int) -> str | None:
    """The choice letter a model picked, one of the first `n_choices` letters.

    Read, in order: \\boxed{B}; the last "the answer is (B)" / "Answer: B" (see `_answer_letter`);
    a leading "B." / "(B)" / "**B**"; "option B"; a parenthesised "(B)" (the last one)."""
    text = first_answer_segment(text)
    valid = {chr(ord("A") + i) for i in range(n_choices)}

    after = _after_last_marker(text)
    got = _answer_letter(extract_boxed(text), valid) or _answer_letter(after, valid)
    if got:
        return got
    if after is not None and _LETTERS_ONLY.fullmatch(after.strip()):
        return None  # "The answer is (B) or (C).": no later fallback may pick one of them
    m = _LETTER_LEAD.match(text)
    if m and m.group(1) in valid:
        return m.group(1)
    for pat in (_LETTER_OPTION, _LETTER_PAREN):
        hits = [g for h in pat.finditer(text) for g in h.groups() if g and g in valid]
        if hits:
            return hits[-1]
    return None


# ---- numbers -------------------------------------------------------------------------------------

# A number as written in answers: "-1,234.5", "$12", "-$12", "$ 12", "3/4", ".5". The lookbehind
# keeps "5-6" from reading "-6" and "v2" from reading "2"; the minus must touch the number (or its
# "$"), so "20 - 5" is 20 and 5, not -5.
_NUMBER = re.compile(r"(?<![\w.])-?(?:\$\s?)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|(?<![\w.])-?\.\d+")
# U+2212 (minus sign) and U+2013 (en dash) read as "-": before a number they are a minus sign, and
# between two numbers ("5–10") the lookbehind above keeps them a separator. Thin spaces go.
_MINUS = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2009": "", "\u202f": ""})
# Number words that carry a sign: "negative 10" always; "minus 10" unless it follows a number or a
# closing bracket ("20 minus 5" is a subtraction). Spelled-out numbers ("ten") are not read.
_NEGATIVE_WORD = re.compile(r"\bnegative\s+(?=\$?\d|\.\d)", re.IGNORECASE)
_MINUS_WORD = re.compile(r"(?<![\d)\]}]\s)(?<![\d)\]}])\bminus\s+(?=\$?\d|\.\d)", re.IGNORECASE)


def normalize_number(s: str) -> str | None:
    """A canonical string for a number: "$1,000.00" -> "1000", "3/4" -> "0.75", "-.5" -> "-0.5";
    None when `s` is not a number."""
    s = s.translate(_MINUS).replace("$", "").replace(",", "").replace(" ", "").strip().rstrip(".")
    s = s.rstrip("%")
    try:
        if "/" in s:
            num, den = s.split("/", 1)
            v = float(num) / float(den)
        else:
            v = float(s)
    except (ValueError, ZeroDivisionError):
        return None
    if not math.isfinite(v):
        return None
    return str(int(v)) if v == int(v) else repr(v)


def _signed(text: str) -> str:
    """Unicode minus signs and sign words as "-": "−10", "–10", "negative 10", "minus 10" -> "-10"."""
    text = text.translate(_MINUS)
    return _MINUS_WORD.sub("-", _NEGATIVE_WORD.sub("-", text))


def _numbers(text: str) -> list[str]:
    return [m.group(0) for m in _NUMBER.finditer(_signed(text))]


def _marked_numbers(text: str) -> list[str]:
    """The numbers of an answer that follows a marker ("####", "Answer:", \\boxed{}): there is
    nothing before it to subtract from, so a leading "- 10" is -10."""
    return _numbers(re.sub(r"^\s*-\s+(?=\$?\d|\.\d)", "-", _signed(text)))


# What may stand on the left of an equation that is the answer itself ("48 - 20 = 24"): numbers,
# operators and brackets, LaTeX fractions and operators included, and nothing else (no words).
_ARITHMETIC = re.compile(r"[\d\s.,$%()\[\]{}+\-*/×÷x^]*")
_LATEX_OPERATOR = re.compile(r"\\(?:[dt]?frac|cdot|times|div|left|right)")


def _is_arithmetic(s: str) -> bool:
    s = _LATEX_OPERATOR.sub(" ", s)
    return _ARITHMETIC.fullmatch(s) is not None and s.count("(") == s.count(")")


def _equation_result(s: str) -> str:
    """When the answer is an equation, the part holding its result: "7 - 10 = -3" -> " -3",
    "3 * 4 = 12 = 12" -> " 12". An "=" counts only where everything before it (back to the start
    or the previous "=") is arithmetic with balanced brackets: in "60, since 60 = 3 * 20",
    "24 because 24 = 4 x 6" and "60 (=3*20)" the "=" belongs to a justification, and the answer is
    the first number."""
    parts = s.split("=")
    if len(parts) == 1 or not _is_arithmetic(parts[0]):
        return s
    i = 1
    while i < len(parts) - 1 and _is_arithmetic(parts[i]):
        i += 1
    return parts[i] if re.search(r"\d", parts[i]) else s


def _latex_number(s: str) -> str | None:
    """The number an answer marker or \\boxed{} gives: "\\frac{3}{4}", "\\$18", "18\\%", "1{,}000",
    "- 5" (a leading dash is a sign), "7 - 10 = -3" (the equation's result, see `_equation_result`)."""
    s = _signed(s).replace("{,}", ",").replace("\\$", "$").replace("\\%", "%").replace("\\!", "")
    s = re.sub(r"\\text\{[^}]*\}", "", s)
    s = _equation_result(s)
    frac = re.fullmatch(r"\s*(-?)\s*\\[dt]?frac\{(-?\d+)\}\{(\d+)\}\s*", s)
    if frac:
        return normalize_number(f"{frac.group(1)}{frac.group(2)}/{frac.group(3)}")
    nums = _marked_numbers(s)
    return normalize_number(nums[0]) if nums else None


def extract_number(text: str) -> str | None:
    """The numeric answer, normalised (see `normalize_number`).

    Read, in order: the first number after the last "####"; after the last "the answer is";
    inside the last \\boxed{}; else the last number in the text."""
    text = strip_reasoning(text)
    marks = list(re.finditer(r"####\s*", text))
    if marks:
        nums = _marked_numbers(text[marks[-1].end() :].split("\n", 1)[0])
        if nums:
            return normalize_number(nums[0])
    after = extract_after_answer_is(text)
    if after:
        boxed = extract_boxed(after)
        got = _latex_number(boxed if boxed is not None else after)
        if got is not None:
            return got
    boxed = extract_boxed(text)
    if boxed is not None:
        got = _latex_number(boxed)
        if got is not None:
            return got
    nums = _numbers(text)
    return normalize_number(nums[-1]) if nums else None


# ---- MATH answers ---------------------------------------------------------------------------------

_MATH_MINUS = str.maketrans({"\u2212": "-", "\u2013": "-"})
_INLINE_MATH = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)


def extract_math_answer(text: str) -> str | None:
    """A MATH-style final answer as LaTeX: the last \\boxed{}; else what follows "the (final)
    answer is" (dollar signs removed); else the last inline $...$ expression when nothing but
    punctuation follows it (the response ends on its result). U+2212 and en dashes
    are written as "-" (math-verify reads U+2212 but not an en dash)."""
    text = strip_reasoning(text).translate(_MATH_MINUS)
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    after = extract_after_answer_is(text)
    if after:
        m = _INLINE_MATH.search(after)
        inner = next((g for g in m.groups() if g), None) if m else None
        return (inner if inner is not None else after).strip()
    spans = list(_INLINE_MATH.finditer(text))
    # the last $...$ is the answer only when the response ends with it: one cut off mid-working, or
    # one that goes on in prose ("... at $(x, 12)$ respectively."), states no result, and reading it
    # graded a restated question ("$(8 - 12)^3$ ...") as the right answer
    if spans and re.fullmatch(r"[\s.,;:!]*", text[spans[-1].end() :]):
        return next(g for g in spans[-1].groups() if g is not None).strip()
    return None


# ---- code ----------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:```|$)", re.DOTALL)
_CODE_START = re.compile(r"^(?:def |async def |class |import |from \S+ import |@)")
_CODE_LINE = re.compile(
    r"^(?:def |async def |class |import |from |@|#|if |elif |else|for |while |try|except|finally|with |"
    r"return\b|print\(|assert |raise |[A-Za-z_][\w.]*\s*(?:\[.*\])?\s*[+\-*/]?=|[A-Za-z_][\w.]*\(.*\)\s*$|[\])}])"
)
_NOT_PYTHON = {"bash", "sh", "shell", "console", "text", "txt", "json", "output", "plaintext", "javascript", "js", "java", "cpp", "c"}


def _defines(code: str, entry_point: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE) is not None


def _unfenced_code(text: str, entry_point: str | None) -> str | None:
    """Code written without fences, with prose before and after: from the first line that starts
    a definition or import (the entry point's `def` preferred) to the first unindented prose line."""
    lines = text.split("\n")
    start = None
    if entry_point:
        for i, line in enumerate(lines):
            if re.match(rf"(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", line):
                start = i
                break
        # imports written just above the function belong to it
        while start is not None and start > 0 and re.match(r"(?:import |from \S+ import |@)", lines[start - 1]):
            start -= 1
    if start is None:
        start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), None)
    if start is None:
        return None
    kept: list[str] = []
    for line in lines[start:]:
        if line.strip() and not line[0].isspace() and not _CODE_LINE.match(line):
            break
        kept.append(line)
    return "\n".join(kept).rstrip() + "\n"


def extract_code(text: str, entry_point: str | None = None) -> str:
    """The program a model wrote, ready to run.

    Fenced blocks win: among the Python blocks, the last one that defines `entry_point` (a later
    block usually fixes an earlier draft, while usage examples do not redefine it), else the first
    Python block. Without fences, code with prose around it is cut out (`_unfenced_code`). Anything
    else is returned as it is: a plain completion that continues the prompt's function body."""
    text = strip_reasoning(text) if "<think>" in text.lower() or "</think>" in text.lower() else text
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]
    python = [code for lang, code in blocks if lang not in _NOT_PYTHON]
    if python:
        if entry_point:
            defining = [c for c in python if _defines(c, entry_point)]
            if defining:
                return defining[-1].rstrip() + "\n"
        return python[0].rstrip() + "\n"
    if text.lstrip("\n")[:1] in (" ", "\t"):
        return text  # a completion that continues the prompt's function body
    code = _unfenced_code(text, entry_point)
    return code if code is not None else text
