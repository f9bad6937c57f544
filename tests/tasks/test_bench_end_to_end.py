"""The bundled SmolLM2 on two items of each generative benchmark, and a prompt-variant run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from capeval.analysis.sensitivity import run_variants
from capeval.engine import evaluate_tasks
from capeval.prompting import PromptConfig
from capeval.tasks import get_task
from capeval.types import Response

pytestmark = pytest.mark.slow
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"
GENERATIVE = ("gsm8k", "math", "bbh", "drop")


def test_generative_tasks_store_raw_output_extracted_answer_and_unparsed_rate(smollm2, store):
    # short outputs keep the test fast on CPU; the pipeline is the same as a full run
    tasks = [get_task(n, data=str(FIXTURES / n)) for n in GENERATIVE]
    tasks = [replace(t, generation=replace(t.generation, max_tokens=12)) for t in tasks]
    result = evaluate_tasks(smollm2, tasks, PromptConfig(shots=1), store=store, limit=2, progress=False)
    metric_of = {"gsm8k": "exact_match", "math": "equiv", "bbh": "exact_match", "drop": "f1"}
    for task in tasks:
        rows = list(store.iter_samples(result.run_id, task.name))
        samples = {s.id: s for s in task.load(limit=2).samples}  # up to 2 per subject (MATH and BBH have 2 subjects)
        assert len(rows) == len(samples) >= 2, task.name
        for row in rows:
            raw = row["response"][0]["text"]
            assert isinstance(raw, str) and row["response"][0]["error"] is None
            # the stored extracted answer is what the scorer reads from the stored raw output
            again = task.score(samples[row["sample_id"]], [Response(text=raw)])
            assert row["extracted"] == again.extracted and row["parsed"] == again.parsed
            assert row["prompt"].endswith(("Answer:", "Solution:"))
        m = result.metric(task.name, metric_of[task.name])
        assert m.n == len(rows)
        assert m.unparsed_rate == sum(not r["parsed"] for r in rows) / len(rows)
        assert m.value == pytest.approx(sum(r["scores"][metric_of[task.name]] for r in rows) / len(rows))


def test_run_variants_one_run_per_prompt_and_a_summary(smollm2, store):
    task = get_task("hellaswag", data=str(FIXTURES / "hellaswag"))
    single = get_task("mtbench-category")  # a YAML task that ships only the default prompt
    results, summary = run_variants(
        smollm2, [task, single], PromptConfig(), 2, store, limit=1, progress=False
    )
    assert [r.config["prompt"]["variant"] for r in results] == [0, 1]
    assert results[0].tasks == ("hellaswag", "mtbench-category") and results[1].tasks == ("hellaswag",)
    assert "prompt variant 1: not shipped by mtbench-category" in results[1].warnings
    assert {(s.task, s.n_variants) for s in summary if s.metric == "acc"} == {
        ("hellaswag", 2),
        ("mtbench-category", 1),
    }
    assert len({r.run_id for r in results}) == 2 and all(store.run_result(r.run_id) for r in results)
    rows = {(s.task, s.metric): s for s in summary}
    acc_norm = rows[("hellaswag", "acc_norm")]
    assert acc_norm.n_variants == 2
    assert acc_norm.values == tuple(r.metric("hellaswag", "acc_norm").value for r in results)
    assert acc_norm.min <= acc_norm.mean <= acc_norm.max
    # variant 0 has no instruction line; variant 1 starts with its own
    prompts = [next(store.iter_samples(r.run_id))["prompt"] for r in results]
    assert prompts[0] == "Roof shingle removal: A man is sitting on a roof. He"
    assert prompts[1] == "Complete the description with the most plausible ending.\n\n" + prompts[0]
