"""IMPACT writing: the fixture, the definition + prompt the model sees, and exact per-category
relevance / coherence means with a scripted judge over real HTTP."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from capeval.engine import evaluate_tasks
from capeval.errors import CapevalError
from capeval.models import load_model
from capeval.tasks import get_task
from capeval.tasks.impact import category_of
from scripted_chat import ScriptedChatServer

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "impact"
CASE = re.compile(r"\(case: (rel\w+) (coh\w+)\)")
ANSWER = re.compile(r"Essay for (rel\w+) (coh\w+)\.")


def mut_rule(model: str, messages: list[dict[str, str]]) -> str:
    m = CASE.search(messages[-1]["content"])
    assert m
    return f"Essay for {m.group(1)} {m.group(2)}."


def judge_rule(model: str, messages: list[dict[str, str]]) -> str:
    """relN / cohN in the text under review give the score for that quality; relbad never parses."""
    system = messages[0]["content"]
    text = messages[-1]["content"]
    rel, coh = ANSWER.search(text).groups()  # type: ignore[union-attr]
    case = rel if "Relevance:" in system else coh
    if case.endswith("bad"):
        return "A fine text."
    return f"Justification.\n\nEvaluation Score\nScore: {case[3:]}/5"


def test_fixture_and_prompt():
    task = get_task("impact", data=str(FIXTURE))
    loaded = task.load()
    assert loaded.malformed == [] and len(loaded.samples) == 8
    assert [s.metadata["category"] for s in loaded.samples[::2]] == ["informative", "professional", "argumentative", "creative"]
    from capeval.engine import plan_task
    from capeval.prompting import PromptConfig

    plan = plan_task(task, PromptConfig())
    # the authors' generation prompt: the category's definition, a space, then the prompt
    assert plan.requests[0][0].prompt[-1].content == (
        "Informative writing explains a topic or gives practical advice. Explain how a heat pump warms a house. (case: rel4 coh5)"
    )
    assert plan.requests[0][0].params.max_tokens == 1024
    assert category_of("Creative Writing") == "creative"
    with pytest.raises(ValueError, match="unknown IMPACT category"):
        category_of("Poetry")


def test_scripted_judge_per_category_means(store):
    with ScriptedChatServer(mut_rule) as mut_srv, ScriptedChatServer(judge_rule) as judge_srv:
        mut = load_model("openai:mut", base_url=mut_srv.base_url)
        judge = load_model("openai:judge", base_url=judge_srv.base_url)
        result = evaluate_tasks(mut, [get_task("impact", data=str(FIXTURE))], store=store, progress=False, judge=judge)
        # 8 relevance + 8 coherence verdicts, plus one parse retry for the unreadable one
        assert len(judge_srv.requests) == 17
        coherence_prompts = [r for r in judge_srv.requests if "Coherence:" in r["messages"][0]["content"]]
        assert len(coherence_prompts) == 8

    rel = result.metric("impact", "relevance")
    coh = result.metric("impact", "coherence")
    assert rel.n == 7 and rel.value == pytest.approx((4 + 2 + 5 + 3 + 1 + 5 + 4) / 7)
    assert coh.n == 8 and coh.value == pytest.approx((5 + 3 + 4 + 2 + 3 + 4 + 5 + 2) / 8)
    assert rel.unparsed_rate == pytest.approx(1 / 8)
    per = {(m.task, m.metric): m for m in result.metrics if m.task.startswith("impact/category:")}
    assert per[("impact/category:informative", "relevance")].value == pytest.approx(3.0)
    assert per[("impact/category:professional", "relevance")].value == pytest.approx(5.0)
    assert per[("impact/category:professional", "relevance")].n == 1
    assert per[("impact/category:professional", "coherence")].value == pytest.approx(3.0)
    assert per[("impact/category:argumentative", "coherence")].value == pytest.approx(3.5)
    assert per[("impact/category:creative", "coherence")].value == pytest.approx(3.5)
    stored = {r["sample_id"]: r for r in store.iter_samples(result.run_id, "impact")}
    assert stored["impact-003"]["parsed"] is False and "relevance" in stored["impact-003"]["metadata"]["error"]
    assert stored["impact-003"]["scores"] == {"coherence": 2.0}


def test_impact_needs_a_judge(store):
    with ScriptedChatServer(mut_rule) as mut_srv:
        mut = load_model("openai:mut", base_url=mut_srv.base_url)
        with pytest.raises(CapevalError) as e:
            evaluate_tasks(mut, [get_task("impact", data=str(FIXTURE))], store=store, progress=False, limit=1)
    assert "no judge" in str(e.value) and "--judge" in (e.value.hint or "")


def test_judge_calls_that_fail_for_good_leave_the_run_incomplete(store):
    """A judge that cannot be reached is not a run that finished: the unrated samples are failed
    calls (the run is `incomplete`, the CLI exits 3), and a re-run retries only the judge's calls."""
    with ScriptedChatServer(mut_rule) as mut_srv:
        mut = load_model("openai:mut", base_url=mut_srv.base_url)
        dead = load_model("openai:judge", base_url="http://127.0.0.1:9/v1", max_retries=0)
        result = evaluate_tasks(mut, [get_task("impact", data=str(FIXTURE))], store=store, progress=False, judge=dead)
        assert not result.complete and result.n_calls_failed == 8
        assert any("8 judged samples have no verdict because judge calls failed" in w for w in result.warnings)
        assert store.query("SELECT status FROM runs WHERE run_id = ?", (result.run_id,))[0]["status"] == "incomplete"
        answered = len(mut_srv.requests)
        with ScriptedChatServer(judge_rule) as judge_srv:
            judge = load_model("openai:judge", base_url=judge_srv.base_url)
            again = evaluate_tasks(mut, [get_task("impact", data=str(FIXTURE))], store=store, progress=False, judge=judge)
        assert len(mut_srv.requests) == answered  # the essays came from the cache
    assert again.complete and again.metric("impact", "coherence").n == 8
