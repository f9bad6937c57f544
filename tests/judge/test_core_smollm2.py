"""End to end with the bundled SmolLM2-135M as the judge: whatever it writes, verdicts are parsed or counted."""

from __future__ import annotations

import pytest

from capeval.judge import JudgeItem, Reference, load_recipe_text, run_judge, summarize
from capeval.judge.check import RatedResponse, check_ratings
from capeval.judge.recipes import builtin_path


def _short(name: str, max_tokens: int) -> object:
    """A built-in recipe with a small output budget, as a user would edit a copy (CPU time in CI)."""
    text = builtin_path(name).read_text()
    head = next(line for line in text.splitlines() if line.startswith("max_tokens:"))
    return load_recipe_text(text.replace(head, f"max_tokens: {max_tokens}"), f"{name} (short)", name)


ITEMS = [
    JudgeItem("paris", "What is the capital of France?", "The capital of France is Paris."),
    JudgeItem("sum", "What is 12 + 30?", "12 + 30 = 41.",
              references=(Reference("12 + 30 = 42.", (5, 5), ("Correct.", "Right.")),)),
    JudgeItem("empty", "Name a colour.", ""),
]


@pytest.mark.slow
def test_smollm2_judge_verdicts_are_parsed_or_counted(smollm2, store):
    recipe = _short("single", 32)
    verdicts = run_judge(smollm2, recipe, ITEMS, store=store)
    assert [v.item_id for v in verdicts] == ["paris", "sum", "empty"]
    s = summarize(verdicts)
    assert s.n == 3 and s.empty == 1 and s.parsed + s.failed == 2
    for v in verdicts[:2]:
        assert v.attempts in (1, 2) and v.text == v.metadata["attempt_texts"][-1]
        if v.parsed:
            assert 1 <= v.score <= 10 and v.error is None
        else:  # a failure is recorded with its reason and the judge's text, never a guessed score
            assert v.score is None and "[[X]]" in v.error and v.attempts == 2
    # the same calls again come from the store
    again = run_judge(smollm2, recipe, ITEMS, store=store)
    assert [(v.score, v.parsed, v.text) for v in again] == [(v.score, v.parsed, v.text) for v in verdicts]

    # judge-check on the same responses reuses those cached calls
    rated = [RatedResponse(i, (5.0,) if i.id == "paris" else (1.0,), "all") for i in ITEMS[:2]]
    report = check_ratings(smollm2, recipe, rated, store=store, n_resamples=50)
    assert (report.summary.parsed, report.summary.failed) == (s.parsed, s.failed)
    assert [r["judge_score"] for r in report.rows] == [v.score for v in verdicts[:2]]
    assert report.ablation == [] and "ablation was skipped" in report.notes[0]
