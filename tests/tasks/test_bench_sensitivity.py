"""Prompt variants: every task ships paraphrased prompts; the sensitivity summary's numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from capeval.analysis.sensitivity import summarize, variant_of
from capeval.engine import plan_task
from capeval.errors import TaskSpecError
from capeval.prompting import PromptConfig
from capeval.tasks import get_task
from capeval.types import MetricResult, RunResult

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"
TASK_DATA = {
    "mmlu": "mmlu", "mmlu_gen": "mmlu", "cmmlu": "cmmlu", "ceval": "ceval", "gpqa_main": "gpqa",
    "hellaswag": "hellaswag", "gsm8k": "gsm8k", "math": "math", "bbh": "bbh", "drop": "drop",
    "crass": "crass/CRASS_FTM_main_data_set.csv", "hhh": "hhh",
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(TASK_DATA))
def test_each_task_ships_at_least_three_distinct_paraphrases(name):
    task = get_task(name, data=str(FIXTURES / TASK_DATA[name]))
    assert task.n_variants >= 4
    prompts = [plan_task(task, PromptConfig(variant=v), limit=1).prompts[0] for v in range(task.n_variants)]
    assert len(set(prompts)) == task.n_variants
    with pytest.raises(TaskSpecError, match=f"no prompt variant {task.n_variants}"):
        plan_task(task, PromptConfig(variant=task.n_variants), limit=1)


def test_variant_changes_wording_not_items_or_exemplars():
    task = get_task("gsm8k", data=str(FIXTURES / "gsm8k"))
    default = plan_task(task, PromptConfig(shots=1))
    v2 = plan_task(task, PromptConfig(shots=1, variant=2))
    assert [s.id for s in v2.samples] == [s.id for s in default.samples]
    assert v2.prompts[0] == (
        "Work out the solution to the problem and state the final numeric answer.\n\n"
        "Problem: A farm has 1,200 sheep and sells 250. How many remain?\n"
        "Solution: 1,200 - 250 = 950 sheep remain. The answer is 950.\n\n"
        "Problem: Janet has 16 eggs, eats 3 and bakes with 4. She sells the rest at $2 each. How much does she make?\n"
        "Solution:"
    )
    mmlu = get_task("mmlu", data=str(FIXTURES / "mmlu"))
    assert plan_task(mmlu, PromptConfig(shots=0, variant=2)).prompts[0] == (
        "Below are exam questions about anatomy. Exactly one option is correct.\n\n"
        "Which organ pumps blood?\nA. Liver\nB. Lung\nC. Kidney\nD. Heart\nThe correct option is"
    )


def _run(variant: int, values: dict[tuple[str, str], tuple[float, float, float]]) -> RunResult:
    metrics = tuple(MetricResult(t, m, v, lo, hi, 100) for (t, m), (v, lo, hi) in values.items())
    return RunResult(f"run{variant}", "m", ("mmlu",), metrics, config={"prompt": {"variant": variant}})


def test_summarize_mean_min_max_std_and_spread_flag():
    runs = [
        _run(0, {("mmlu", "acc"): (0.60, 0.55, 0.65), ("gsm8k", "exact_match"): (0.30, 0.20, 0.40),
                 ("mmlu/anatomy", "acc"): (0.5, 0.4, 0.6)}),
        _run(1, {("mmlu", "acc"): (0.50, 0.45, 0.55), ("gsm8k", "exact_match"): (0.32, 0.22, 0.42)}),
        _run(2, {("mmlu", "acc"): (0.70, 0.65, 0.75), ("gsm8k", "exact_match"): (0.31, 0.21, 0.41)}),
    ]  # fmt: skip
    rows = {(r.task, r.metric): r for r in summarize(runs)}
    assert set(rows) == {("mmlu", "acc"), ("gsm8k", "exact_match")}  # per-subject rows left out
    m = rows[("mmlu", "acc")]
    assert m.values == (0.60, 0.50, 0.70) and m.variants == (0, 1, 2) and m.n_variants == 3
    assert m.mean == pytest.approx(0.60) and (m.min, m.max) == (0.50, 0.70)
    assert m.std == pytest.approx(0.10)  # sample std of 0.5, 0.6, 0.7
    assert m.ci_half_width == pytest.approx(0.05) and m.spread == pytest.approx(0.20) and m.exceeds_ci
    g = rows[("gsm8k", "exact_match")]
    assert g.spread == pytest.approx(0.02) and g.ci_half_width == pytest.approx(0.10) and not g.exceeds_ci
    with_groups = {(r.task, r.metric) for r in summarize(runs, include_groups=True)}
    assert ("mmlu/anatomy", "acc") in with_groups
    assert variant_of(RunResult("r", "m", (), (), config={})) == 0


def test_variants_scored_on_different_items_are_named(monkeypatch):
    """A variant whose calls partly failed is scored on fewer items: its spread mixes prompt and
    item set, so the row carries each variant's n and failed count and warns."""
    from rich.console import Console

    from capeval import commands_core

    runs = [
        RunResult("r0", "m", ("gsm8k",), (MetricResult("gsm8k", "exact_match", 0.30, 0.2, 0.4, 100),), config={"prompt": {"variant": 0}}),
        RunResult("r1", "m", ("gsm8k",), (MetricResult("gsm8k", "exact_match", 0.50, 0.4, 0.6, 80, n_failed=20),),
                  config={"prompt": {"variant": 1}}),
    ]  # fmt: skip
    (row,) = summarize(runs)
    assert (row.n, row.n_failed) == ((100, 80), (0, 20))
    assert row.warning and "v1: 20 failed" in row.warning and "v0: 100, v1: 80" in row.warning
    assert row.as_dict()["warning"] == row.warning
    (same,) = summarize([runs[0], RunResult("r2", "m", ("gsm8k",), runs[0].metrics, config={"prompt": {"variant": 2}})])
    assert same.warning is None and same.n == (100, 100)
    console = Console(record=True, width=200)
    monkeypatch.setattr(commands_core, "_console", lambda: console)
    commands_core._print_sensitivity([row])
    out = console.export_text()
    assert "100 80/100" in out and "warning gsm8k exact_match" in out
