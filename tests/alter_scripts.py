"""A CrossEval-format data set and scripted servers for capability alteration tests: the model under
test answers differently when its system prompt holds a STEPS principle, and the judge rates by a
plan per capability and writes principles when asked to (see tests/judge/test_alter.py)."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

from capeval.judge.principles import END_MARKER

# capability -> (number of prompts, judge rating without the STEPS principle, with it)
PLAN = {
    "Reasoning": (8, 2, 4),
    "Coding": (4, 4, 4),
    "English": (3, 3, 3),
    "Spanish": (4, 5, 5),
    "Coding & Reasoning": (3, 2, 3),  # follows its weaker part (Reasoning) up
    "Spanish & Reasoning": (3, 2, 2),  # does not follow: stays while Reasoning rises
    "Image Recognition & Reasoning": (2, 3, 3),  # unsupported: no image input
}
CASE = re.compile(r"\(case: ([\w-]+)\)")
ANSWER = re.compile(r"Answer( with steps)? for case ([\w-]+)")
INDEX = re.compile(r"answer (\d+) of (\d+)")


def write_crosseval(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cols = ["prompt_id", "capability", "difficulty", "prompt", "attached_file", "response_1",
            "response_1_human_1_rating", "response_1_human_1_explanation"]
    rows = []
    for cap, (n, _, _) in PLAN.items():
        slug = "".join(w[0] for w in cap.replace("&", "").split()).lower()
        for i in range(n):
            rows.append({
                "prompt_id": f"{slug}-{i}", "capability": cap, "difficulty": "easy",
                "prompt": f"Question {i} about {cap}. (case: {slug}-{i})",
                "attached_file": "https://example.org/pic.png" if "Image" in cap else "",
                "response_1": "A reference.", "response_1_human_1_rating": "3", "response_1_human_1_explanation": "Fine.",
            })
    with (folder / "test.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        w.writerows(rows)
    return folder


def capability_of(case: str) -> str:
    for cap in PLAN:
        slug = "".join(w[0] for w in cap.replace("&", "").split()).lower()
        if case.rsplit("-", 1)[0] == slug:
            return cap
    raise AssertionError(case)


def mut_rule(model: str, messages: list[dict[str, str]]) -> str:
    """The model under test follows a principle that names STEPS; any other principle changes nothing."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    case = CASE.search(messages[-1]["content"])
    assert case
    return f"Answer{' with steps' if 'STEPS' in system else ''} for case {case.group(1)}."


def principle_list(capability: str, *titles: str) -> str:
    body = "\n".join(f"### Principle {i}: {t}\n- {t.lower()}." for i, t in enumerate(titles, 1))
    return f"## Principles for {capability}\n{body}\n{END_MARKER}"


class Judge:
    """Rates by PLAN; as the writer, proposes NOISE for answers 1-2 and STEPS from answer 3 on, and
    answers answer 3 unreadably once (checks the retry)."""

    def __init__(self) -> None:
        self.writer_calls: Counter[int] = Counter()

    def __call__(self, model: str, messages: list[dict[str, str]]) -> str:
        text = "\n".join(m["content"] for m in messages)
        if "current principles" in text:
            idx = int(INDEX.search(text).group(1))
            self.writer_calls[idx] += 1
            if idx == 3 and self.writer_calls[idx] == 1:
                return "I would add a principle about steps."
            if idx <= 2:
                return f"## Analysis\nWeak.\n\nAction: ADD\n\n{principle_list('Reasoning', 'NOISE first')}"
            return f"## Analysis\nNo steps shown.\n\nAction: REPLACE\n\n{principle_list('Reasoning', 'STEPS: write numbered steps')}"
        m = ANSWER.search(text)
        assert m, "the judge prompt must hold the answer"
        _, without, with_steps = PLAN[capability_of(m.group(2))]
        return f"Cons: some (-1).\nScore: {with_steps if m.group(1) else without}/5"
