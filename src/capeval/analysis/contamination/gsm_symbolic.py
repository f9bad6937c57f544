"""Contamination check (b): GSM-Symbolic style variants of GSM8K items (new numbers and names, recomputed answers)."""

from __future__ import annotations

import ast
import operator
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from capeval.analysis.contamination.errors import ContaminationError
from capeval.formatting import plain_number

# Quantities that also serve as unit constants ("half" -> /2, minutes per hour -> 60): a question
# number with one of these values is never changed, so a coincidence between the question's "2
# dogs" and a solution's "/2" for "half" cannot corrupt the recomputed answer.
FIXED_VALUES = frozenset({0.5, 1, 2, 3, 4, 5, 6, 7, 10, 12, 24, 30, 52, 60, 100, 365, 1000})

FEMALE_NAMES = (
    "Amara", "Beatriz", "Chloe", "Dalia", "Elena", "Fatima", "Grace", "Hana", "Ingrid", "Jasmine",
    "Keiko", "Leila", "Maya", "Nadia", "Olivia", "Priya", "Rosa", "Sofia", "Tamara", "Yara",
    "Natalia", "Weng", "Betty", "Julie", "Mary", "Emily", "Sarah", "Anna", "Lisa", "Karen",
)
MALE_NAMES = (
    "Arjun", "Bruno", "Carlos", "Diego", "Emeka", "Felix", "Gabriel", "Hiro", "Ivan", "Jamal",
    "Kofi", "Liam", "Mateo", "Nikolai", "Omar", "Pavel", "Rafael", "Samir", "Tomas", "Yusuf",
    "James", "John", "Mark", "Tom", "Jack", "David", "Michael", "Paul", "Peter", "Robert",
)

_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+\.\d+|\d+|\.\d+)(?![\d])")
_ANNOTATION = re.compile(r"<<([^<>=]+)=([^<>]+)>>")
_FINAL = re.compile(r"####\s*(-?[\d,]*\.?\d+)")
_BINOPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
}


class _ChainError(ValueError):
    """Why an item's worked solution cannot be followed or a variant is invalid.

    `reason` is the category counted in PerturbReport.rejected; the message adds the detail."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def safe_eval(expr: str) -> float:
    """Evaluate an arithmetic expression (+ - * / ** %, parentheses) without eval()."""

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 10:
                raise _ChainError("exponent too large")
            try:
                return _BINOPS[type(node.op)](left, right)
            except ZeroDivisionError:
                raise _ChainError("division by zero") from None
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        raise _ChainError("unsupported arithmetic in an annotation", expr)

    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        raise _ChainError("unsupported arithmetic in an annotation", expr) from None
    return ev(tree)


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def _is_int(v: float) -> bool:
    return abs(v - round(v)) < 1e-9


@dataclass(frozen=True)
class _Step:
    # each operand: ("q", question-number index) | ("s", earlier step index) | ("c", constant value)
    template: tuple[str, ...]  # expression text split around operands; operands between pieces
    operands: tuple[tuple[str, Any], ...]
    result: float
    rounding: int | None = None  # decimals the original solution rounded this step to


@dataclass(frozen=True)
class GsmChain:
    """A GSM8K item's question numbers and its annotated solution steps, linked symbolically."""

    question_numbers: tuple[tuple[int, int, float], ...]  # (start, end, value) of each number in the question
    steps: tuple[_Step, ...]
    final_step: int  # the step whose result is the "#### N" answer


def parse_gsm_chain(question: str, answer: str) -> GsmChain:
    """Link every number in the solution's <<expr=result>> annotations to a question number, an
    earlier step's result or a constant; raise _ChainError when that cannot be done unambiguously."""
    qnums = tuple((m.start(), m.end(), _num(m.group(1))) for m in _NUMBER.finditer(question))
    final = _FINAL.search(answer)
    if not final:
        raise _ChainError("no '#### N' final answer")
    final_value = _num(final.group(1))
    annotations = _ANNOTATION.findall(answer)
    if not annotations:
        raise _ChainError("no <<expr=result>> calculator annotations")
    qvalues: dict[float, list[int]] = {}
    for i, (_, _, v) in enumerate(qnums):
        qvalues.setdefault(v, []).append(i)
    steps: list[_Step] = []
    for expr, res in annotations:
        expr = expr.replace("x", "*").replace("×", "*").replace("÷", "/")
        try:
            result = _num(res.strip().rstrip("."))
        except ValueError:
            raise _ChainError("non-numeric step result", res) from None
        # GSM8K rounds some results to 1-2 decimals (10/3=3.33): accept that rounding, nothing more
        decimals = len(res.strip().rstrip(".").partition(".")[2])
        tol = max(1e-6 * max(1.0, abs(result)), 0.5 * 10.0**-decimals if decimals in (1, 2) else 0.0)
        exact = safe_eval(expr.replace(",", ""))
        if abs(exact - result) > tol:
            raise _ChainError("an annotation's arithmetic does not hold", f"{expr}={res}")
        rounding = decimals if abs(exact - result) > 1e-6 * max(1.0, abs(result)) else None
        pieces: list[str] = []
        operands: list[tuple[str, Any]] = []
        pos = 0
        for m in _NUMBER.finditer(expr):
            pieces.append(expr[pos : m.start()])
            v = _num(m.group(1))
            from_steps = [k for k, s in enumerate(steps) if abs(s.result - v) < 1e-9]
            from_question = qvalues.get(v, []) if v not in FIXED_VALUES else []
            if from_steps and from_question:
                raise _ChainError("a number is both a question number and an earlier result", plain_number(v, 10))
            if from_steps:
                operands.append(("s", from_steps[-1]))
            elif from_question:
                operands.append(("q", v))
            else:
                operands.append(("c", v))
            pos = m.end()
        pieces.append(expr[pos:])
        steps.append(_Step(tuple(pieces), tuple(operands), result, rounding))
    finals = [k for k, s in enumerate(steps) if abs(s.result - final_value) < 1e-9]
    if not finals:
        raise _ChainError("the final answer is not the result of any annotated step")
    if not any(kind == "q" for s in steps for kind, _ in s.operands):
        raise _ChainError("no question number is used in the solution")
    return GsmChain(qnums, tuple(steps), finals[-1])


def _recompute(chain: GsmChain, new_values: Mapping[float, float]) -> list[tuple[str, float]]:
    """New (expression, result) per step; raise _ChainError if a step breaks GSM8K's habits."""
    results: list[float] = []
    out: list[tuple[str, float]] = []
    for step in chain.steps:
        vals = []
        for kind, ref in step.operands:
            vals.append(new_values[ref] if kind == "q" else results[ref] if kind == "s" else ref)
        expr = step.template[0] + "".join(plain_number(v, 10) + piece for v, piece in zip(vals, step.template[1:]))
        value = safe_eval(expr)
        if step.rounding is not None:
            value = round(value, step.rounding)
        if _is_int(step.result) and not _is_int(value):
            raise _ChainError("a whole-number step became fractional")
        if not _is_int(step.result) and abs(value * 100 - round(value * 100)) > 1e-6:
            raise _ChainError("a step needs more than 2 decimals")
        if step.result >= 0 and value < 0:
            raise _ChainError("a step became negative")
        if step.result != 0 and value == 0:
            raise _ChainError("a step became zero")
        results.append(value)
        out.append((expr, value))
    return out


@dataclass(frozen=True)
class PerturbedItem:
    """A GSM-Symbolic style variant: new names and numbers, answer recomputed from the solution."""

    id: str
    question: str
    answer: str  # canonical worked solution "expr = <<expr=result>>result" lines + "#### N"
    final_answer: str
    original_id: str  # the input row's "id", else its index
    original_index: int  # the input row's position (tasks read from a local file number rows so)
    original_question: str
    original_final_answer: str
    numbers: Mapping[str, str]  # original -> new
    names: Mapping[str, str]


@dataclass(frozen=True)
class PerturbReport:
    variants: tuple[PerturbedItem, ...]
    n_items: int
    n_perturbed: int  # items that yielded at least one variant
    rejected: Mapping[str, int]  # reason -> number of items

    @property
    def fraction_perturbed(self) -> float:
        return self.n_perturbed / self.n_items if self.n_items else 0.0


def _new_value(v: float, rng: np.random.Generator) -> float:
    """A nearby different value of the same kind (whole numbers stay whole, decimals keep places)."""
    if _is_int(v):
        lo, hi = max(1, round(v * 0.5)), max(round(v * 1.5), int(v) + 3)
        choices = [x for x in range(lo, hi + 1) if x != int(v) and x not in FIXED_VALUES]
        return float(rng.choice(choices)) if choices else v
    places = len(plain_number(v, 10).split(".")[1])
    step = 10.0**-places
    for _ in range(100):
        # the + 2 steps keeps a range to draw from when v is only a step or two above 0
        x = round(float(rng.uniform(v * 0.5, v * 1.5 + 2 * step)) / step) * step
        if abs(x - v) > step / 2 and x > 0:
            return round(x, places)
    return v


def _format_like(original: str, value: float) -> str:
    if "," in original and value >= 1000:
        return f"{round(value):,}"
    if "." in original:
        return f"{value:.{len(original.split('.')[1])}f}"
    return plain_number(value, 10)


def _rename(question: str, rng: np.random.Generator) -> tuple[str, dict[str, str]]:
    """Swap every known first name for another of the same gender, so pronouns stay right."""
    mapping: dict[str, str] = {}
    for pool in (FEMALE_NAMES, MALE_NAMES):
        present = [n for n in pool if re.search(rf"\b{n}\b", question)]
        spare = [n for n in pool if n not in present and not re.search(rf"\b{n}\b", question)]
        picks = rng.permutation(len(spare))[: len(present)]
        for name, k in zip(present, picks):
            mapping[name] = spare[int(k)]
    if mapping:
        question = re.sub(r"\b(" + "|".join(map(re.escape, mapping)) + r")\b", lambda m: mapping[m.group(1)], question)
    return question, mapping


def perturb_item(
    item_id: str,
    question: str,
    answer: str,
    rng: np.random.Generator,
    n_variants: int = 1,
    max_tries: int = 50,
    index: int = 0,
) -> list[PerturbedItem]:
    """Variants of one GSM8K item (question + answer with <<expr=result>> steps and '#### N').

    Raises _ChainError (with the reason) when the worked solution cannot be followed or no
    valid numbers were found within `max_tries`."""
    chain = parse_gsm_chain(question, answer)
    used = sorted({ref for s in chain.steps for kind, ref in s.operands if kind == "q"})
    out: list[PerturbedItem] = []
    seen: set[tuple[float, ...]] = set()
    last_error = _ChainError("no valid numbers found")
    for _ in range(max_tries * n_variants):
        if len(out) >= n_variants:
            break
        new = {v: _new_value(v, rng) for v in used}
        key = tuple(new[v] for v in used)
        if key in seen:
            continue
        seen.add(key)
        try:
            steps = _recompute(chain, new)
        except _ChainError as e:
            last_error = e
            continue
        text, pos = [], 0
        for start, end, v in chain.question_numbers:
            text.append(question[pos:start])
            original = question[start:end]
            text.append(_format_like(original, new[v]) if v in new else original)
            pos = end
        text.append(question[pos:])
        new_q, names = _rename("".join(text), rng)
        final = plain_number(steps[chain.final_step][1], 10)
        solution = "\n".join(f"{e} = <<{e}={plain_number(r, 10)}>>{plain_number(r, 10)}" for e, r in steps) + f"\n#### {final}"
        out.append(
            PerturbedItem(
                id=f"{item_id}-v{len(out)}",
                question=new_q,
                answer=solution,
                final_answer=final,
                original_id=item_id,
                original_index=index,
                original_question=question,
                original_final_answer=plain_number(chain.steps[chain.final_step].result, 10),
                numbers={plain_number(v, 10): plain_number(new[v], 10) for v in used},
                names=names,
            )
        )
    if not out:
        raise last_error
    return out


def perturb_gsm8k(
    items: Iterable[Mapping[str, Any]], n_variants: int = 1, seed: int = 0, max_tries: int = 50
) -> PerturbReport:
    """GSM-Symbolic style variants of GSM8K rows (keys question, answer; optional id)."""
    rng = np.random.default_rng(seed)
    variants: list[PerturbedItem] = []
    rejected: Counter[str] = Counter()
    n = ok = 0
    for i, row in enumerate(items):
        n += 1
        if "question" not in row or "answer" not in row:
            raise ContaminationError(f"item {i + 1} has no question/answer", "GSM8K rows have 'question' and 'answer'")
        try:
            vs = perturb_item(str(row.get("id", i)), str(row["question"]), str(row["answer"]), rng, n_variants, max_tries, i)
        except _ChainError as e:
            rejected[e.reason] += 1
            continue
        ok += 1
        variants.extend(vs)
    return PerturbReport(tuple(variants), n, ok, dict(rejected))
