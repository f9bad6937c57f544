"""End to end: the bundled SmolLM2 model writes code for 3 HumanEval problems, the sandbox runs it,
and the store keeps each sample's raw output, extracted code and the isolation level used."""

from __future__ import annotations

import json

import pytest

from capeval.engine import evaluate_tasks
from capeval.prompting import PromptConfig
from capeval.scoring.sandbox import sandbox_isolation
from capeval.tasks.registry import get_task


@pytest.mark.slow
def test_smollm2_on_three_humaneval_items(smollm2, store) -> None:
    task = get_task("humaneval")
    # a short budget keeps CI fast; the code is cut at the Codex stops either way
    task.generation = type(task.generation)(max_tokens=48, temperature=0.0, stop=task.generation.stop)
    config = PromptConfig()
    result = evaluate_tasks(smollm2, [task], config, store=store, limit=3, progress=False)

    metric = result.metric("humaneval", "pass@1")
    assert metric.n == 3
    assert 0.0 <= metric.value <= 1.0

    rows = store.query("SELECT sample_id, response, extracted, metadata FROM samples WHERE run_id = ?", (result.run_id,))
    assert sorted(r["sample_id"] for r in rows) == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    for r in rows:
        raw = json.loads(r["response"])[0]["text"]
        meta = json.loads(r["metadata"])
        assert isinstance(raw, str)  # the raw output is kept for audit (empty when the model stopped at once)
        assert r["extracted"] is not None  # and the code that was run,
        assert r["extracted"].strip() in raw  # read out of the raw output, not made up
        assert meta["isolation"] == sandbox_isolation()
        assert meta["runs"][0]["status"] in ("passed", "failed", "timeout", "killed")
    assert task.info()["sandbox"] == sandbox_isolation()

    # a second run is answered from the store: same scores, no new model calls
    again = evaluate_tasks(smollm2, [task], config, store=store, limit=3, progress=False)
    assert again.n_calls_new == 0
    assert again.metric("humaneval", "pass@1").value == metric.value
