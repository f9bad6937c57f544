"""HumanEval on its real packaged data: canonical solutions pass all 164 problems, broken ones none;
prompts, stops, pass@k with n samples, local copies and chat answers."""

from __future__ import annotations

import json

import pytest

from capeval.prompting import PromptConfig
from capeval.scoring.base import ScoringContext
from capeval.scoring.code import build_program
from capeval.scoring.metrics import pass_at_k
from capeval.tasks.registry import get_task
from capeval.types import Response


@pytest.fixture(scope="module")
def problems():
    task = get_task("humaneval")
    loaded = task.load()
    return task, loaded.samples, loaded.malformed


def _off_by_one(sample) -> str:
    """A chat-style answer: the canonical function, with its result nudged by one step."""
    ep = sample.fields["entry_point"]
    return (
        "Here is my solution:\n```python\n"
        + sample.fields["prompt"]
        + sample.fields["canonical_solution"]
        + f"\n\n_canonical = {ep}\n\n"
        + f"def {ep}(*args, **kwargs):\n"
        + "    r = _canonical(*args, **kwargs)\n"
        + "    if isinstance(r, bool):\n        return not r\n"
        + "    if isinstance(r, (int, float)):\n        return r + 1\n"
        + "    if isinstance(r, str):\n        return r + 'x'\n"
        + "    if isinstance(r, (list, tuple)):\n        return type(r)(list(r) + [None])\n"
        + "    return 1\n```\nIt nudges nothing, promise."
    )


def test_packaged_data_loads_all_164(problems) -> None:
    task, samples, malformed = problems
    assert len(samples) == 164 and malformed == []
    assert samples[0].id == "HumanEval/0"
    assert samples[0].fields["entry_point"] == "has_close_elements"
    assert task.capabilities == ("Coding",)
    assert task.info()["sandbox"] in ("bwrap", "unshare", "rlimits")


def test_canonical_solutions_score_one_and_broken_ones_zero(problems) -> None:
    task, samples, _ = problems
    canonical = task.score_all(samples, [[Response(text=s.fields["canonical_solution"])] for s in samples], ScoringContext())
    assert [s.sample_id for s in canonical if s.values["pass@1"] != 1.0] == []
    assert sum(s.values["pass@1"] for s in canonical) / 164 == 1.0
    assert {s.metadata["isolation"] for s in canonical} == {task.info()["sandbox"]}

    stubbed = task.score_all(samples, [[Response(text="    return None\n")] for s in samples], ScoringContext())
    assert [s.sample_id for s in stubbed if s.values["pass@1"] != 0.0] == []

    nudged = task.score_all(samples, [[Response(text=_off_by_one(s))] for s in samples], ScoringContext())
    assert [s.sample_id for s in nudged if s.values["pass@1"] != 0.0] == []


def test_plain_prompt_is_the_humaneval_prompt_with_codex_stops(problems) -> None:
    task, samples, _ = problems
    rendered = task.render(samples[3], [], PromptConfig())
    assert rendered.prompt == samples[3].fields["prompt"]
    (req,) = task.requests(samples[3], rendered, PromptConfig())
    assert req.params.stop == ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
    assert req.params.temperature == 0.0

    chat = task.render(samples[3], [], PromptConfig(chat=True))
    assert chat.prompt[-1].role == "user" and samples[3].fields["prompt"] in chat.prompt[-1].content
    (chat_req,) = task.requests(samples[3], chat, PromptConfig(chat=True))
    assert chat_req.params.stop == ("\n```\n",)  # a closing fence ends the answer


def test_completion_is_cut_at_a_new_top_level_statement(problems) -> None:
    _, samples, _ = problems
    s = samples[0]
    code, program = build_program(s.fields["prompt"], s.fields["canonical_solution"] + "\nprint('debug')\nif True:\n    x = 1\n", "has_close_elements")
    assert code == s.fields["canonical_solution"]
    assert program == s.fields["prompt"] + s.fields["canonical_solution"]


def test_pass_at_k_with_several_samples(problems) -> None:
    _, samples, _ = problems
    from capeval.tasks.humaneval import humaneval

    t = humaneval(n_samples=4)
    assert t.repeats == 4 and t.generation.temperature == 0.8 and t.k_values == (1,)
    s = samples[2]
    good = Response(text=s.fields["canonical_solution"])
    bad = Response(text="    return 0\n")
    (score,) = t.score_all([s], [[good, bad, bad, good]], ScoringContext())
    assert score.values == {"pass@1": pytest.approx(pass_at_k(4, 2, 1))} == {"pass@1": 0.5}
    assert score.metadata["n_correct"] == 2
    t10 = humaneval(n_samples=10, k_values=(1, 5, 10))
    (score,) = t10.score_all([s], [[good] + [bad] * 9], ScoringContext())
    assert score.values["pass@1"] == pytest.approx(0.1)
    assert score.values["pass@5"] == pytest.approx(0.5)
    assert score.values["pass@10"] == 1.0


def test_failed_model_call_counts_as_wrong(problems) -> None:
    task, samples, _ = problems
    (score,) = task.score_all([samples[0]], [[Response(error="server down")]], ScoringContext())
    assert score.values["pass@1"] == 0.0 and not score.parsed
    assert score.metadata["runs"][0]["status"] == "error"


def test_local_copy_with_the_same_fields(tmp_path, problems) -> None:
    _, samples, _ = problems
    path = tmp_path / "humaneval.jsonl"
    with path.open("w") as fh:
        for s in samples[:3]:
            fh.write(json.dumps(dict(s.fields)) + "\n")
        fh.write(json.dumps({"task_id": "broken/1", "prompt": "", "test": "", "entry_point": ""}) + "\n")
    task = get_task("humaneval", data=str(path))
    loaded = task.load()
    assert [s.id for s in loaded.samples] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert len(loaded.malformed) == 1 and "missing prompt" in loaded.malformed[0]


def test_chat_answer_with_prose_and_fences_is_run(problems) -> None:
    task, samples, _ = problems
    s = samples[0]
    answer = (
        "<think>compare every pair</think>Sure! Here's the function:\n\n```python\nfrom typing import List\n\n"
        "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
        "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n```\n\n"
        "Example:\n```python\nprint(has_close_elements([1.0, 2.0], 0.5))\n```"
    )
    (score,) = task.score_all([s], [[Response(text=answer)]], ScoringContext())
    assert score.values["pass@1"] == 1.0
    assert score.extracted.startswith("from typing import List\n\ndef has_close_elements")
