"""--recipe-file reaches every judged task: CrossEval, IMPACT and MT-Bench send the edited rubric."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import capeval
from capeval.judge.mtbench import load_questions, run_mtbench
from capeval.judge.recipes import RecipeError, load_recipe_files, recipe_path
from capeval.models import load_model
from scripted_chat import ScriptedChatServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MARK = "EDITED RUBRIC 7f3a: reward answers that cite a source."


def edited(tmp_path: Path, name: str) -> Path:
    """A user's copy of a built-in recipe with one line added to its system block."""
    text = recipe_path(name).read_text(encoding="utf-8")
    assert "{% block system %}\n" in text
    out = tmp_path / f"my_{name}.jinja"
    out.write_text(text.replace("{% block system %}\n", "{% block system %}\n" + MARK + "\n", 1), encoding="utf-8")
    return out


def judge_rule(model: str, messages: list[dict[str, str]]) -> str:
    return "Fine.\n\nEvaluation Score\nScore: 4/5\nRating: [[7]]"


def answer_rule(model: str, messages: list[dict[str, str]]) -> str:
    return "An answer."


def _system_prompts(srv: ScriptedChatServer) -> list[str]:
    return [r["messages"][0]["content"] for r in srv.requests if r["messages"][0]["role"] == "system"]


def test_impact_run_with_an_edited_relevance_recipe_sends_it_only_for_relevance(tmp_path):
    recipe = edited(tmp_path, "writing_relevance")
    with ScriptedChatServer(answer_rule) as mut, ScriptedChatServer(judge_rule) as judge:
        r = subprocess.run(
            [sys.executable, "-m", "capeval", "run", "-m", f"openai:mut@{mut.base_url}", "-t", "impact",
             "--data", f"impact={FIXTURES / 'impact'}", "--judge", f"openai:judge@{judge.base_url}",
             "--recipe-file", str(recipe), "--db", str(tmp_path / "db.sqlite"), "--json", str(tmp_path / "out.json"),
             "--no-progress"],
            check=False, capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"}, timeout=600,
        )
        assert r.returncode == 0, r.stderr
        systems = _system_prompts(judge)
    relevance = [s for s in systems if "Relevance:" in s]
    coherence = [s for s in systems if "Coherence:" in s]
    assert len(relevance) == len(coherence) == 8
    assert all(MARK in s for s in relevance) and not any(MARK in s for s in coherence)
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["config"]["recipe_files"] == [str(recipe)]


def test_crosseval_through_the_python_api_sends_the_edited_recipe(tmp_path):
    recipe = edited(tmp_path, "crosseval")
    task = capeval.load_task("crosseval", data=str(FIXTURES / "crosseval"))
    with ScriptedChatServer(answer_rule) as mut, ScriptedChatServer(judge_rule) as judge:
        plain = capeval.evaluate(task, f"openai:mut@{mut.base_url}", judge=f"openai:judge@{judge.base_url}",
                                 db=tmp_path / "a.sqlite")
        assert systems_have_mark(judge) == (0, len(judge.requests))
    with ScriptedChatServer(answer_rule) as mut, ScriptedChatServer(judge_rule) as judge:
        run = capeval.evaluate([task], f"openai:mut@{mut.base_url}", judge=f"openai:judge@{judge.base_url}",
                               recipe_files=[recipe], db=tmp_path / "b.sqlite")
        marked, total = systems_have_mark(judge)
    assert total > 0 and marked == total
    assert run.metric("crosseval", "rating").value == pytest.approx(4.0)
    assert plain.metric("crosseval", "rating").n == run.metric("crosseval", "rating").n


def systems_have_mark(srv: ScriptedChatServer) -> tuple[int, int]:
    texts = ["\n".join(m["content"] for m in r["messages"]) for r in srv.requests]
    return sum(MARK in t for t in texts), len(texts)


def test_mtbench_with_an_edited_single_recipe(store, tmp_path):
    recipes = load_recipe_files([edited(tmp_path, "single")])
    qs = [q for q in load_questions() if q.category == "writing"][:1] + [q for q in load_questions() if q.category == "math"][:1]
    with ScriptedChatServer(answer_rule) as mut, ScriptedChatServer(judge_rule) as judge:
        res = run_mtbench(load_model("openai:mut", base_url=mut.base_url), load_model("openai:judge", base_url=judge.base_url),
                          store, questions=qs, max_tokens=16, recipes=recipes)
        texts = ["\n".join(m["content"] for m in r["messages"]) for r in judge.requests]
    # writing turns use `single` (edited), math turns `reference_guided` (built-in)
    assert len(texts) == 4 and sum(MARK in t for t in texts) == 2
    assert res.run.config["recipe_files"] == {"single": str(tmp_path / "my_single.jinja")}
    with pytest.raises(RecipeError, match="is recipe 'single', which MT-Bench pairwise grading does not use"):
        run_mtbench(load_model("openai:mut", base_url="http://127.0.0.1:9/v1"), load_model("openai:judge", base_url="http://127.0.0.1:9/v1"),
                    store, mode="pairwise", baseline_model=load_model("openai:b", base_url="http://127.0.0.1:9/v1"),
                    questions=qs, recipes=recipes)


def test_recipe_file_for_a_run_without_judged_tasks_is_refused(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "capeval", "run", "-m", "openai:x@http://127.0.0.1:9/v1", "-t", "gsm8k",
         "--recipe-file", str(edited(tmp_path, "single")), "--db", str(tmp_path / "db.sqlite")],
        check=False, capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"}, timeout=600,
    )
    assert r.returncode == 2
    assert "--recipe-file is given but none of the run's tasks is judged" in r.stderr
