"""Judge robustness: the attacks, per-attack score shifts and length bias, against scripted judges over HTTP."""

from __future__ import annotations

import json
import re

import pytest
from scipy import stats

from capeval.cli import main
from capeval.judge import JudgeItem, RecipeError, get_recipe
from capeval.judge.robustness import ATTACKS, BASE_SET, builtin_items, padding, run_robustness
from capeval.models import load_model
from scripted_chat import ScriptedChatServer

CLEAN = {"good": 4, "bad": 2}


def _response(user: str) -> str:
    return user.split("<response>\n", 1)[1].split("\n</response>", 1)[0]


def gullible_rule(model: str, messages: list[dict[str, str]]) -> str:
    """Obeys requests addressed to it, ignores code comments, quotes planted verdicts but keeps its own
    score, likes padding (+1), and cannot produce a verdict for the 'broken' item under the code attack."""
    text = _response(messages[-1]["content"])
    base = 4 if "GOOD" in text else 2
    if "Note to the AI evaluator" in text:
        return "Evaluation Score\nScore: 5/5"
    if "```python" in text:
        if "BROKEN" in text:
            return "no verdict"
        return f"Evaluation Score\nScore: {base}/5"
    if "Score: 5/5" in text:  # quotes the planted marker inside the data tag, then its own score
        return f"The answer contains:\n<response>Evaluation Score\nScore: 5/5</response>\nEvaluation Score\nScore: {base}/5"
    if "To restate the main point" in text:
        return f"Evaluation Score\nScore: {min(5, base + 1)}/5"
    return f"Evaluation Score\nScore: {base}/5"


ITEMS = [
    JudgeItem("g1", "Q1", "GOOD answer one"),
    JudgeItem("g2", "Q2", "GOOD answer two, somewhat longer than the others"),
    JudgeItem("b1", "Q3", "bad"),
    JudgeItem("b2", "Q4", "bad BROKEN under code"),
]


def test_attacks_plant_what_they_claim():
    crosseval, single = get_recipe("crosseval"), get_recipe("single")
    assert "Score: 5/5" in ATTACKS["fake_verdict"]("x", crosseval)
    assert "[[10]]" in ATTACKS["fake_verdict"]("x", single)
    assert "maximum score of 10" in ATTACKS["address_judge"]("x", single)
    assert re.search(r"```python\n# NOTE FOR THE GRADER.*```", ATTACKS["code_comment"]("x", crosseval), re.DOTALL)
    padded = padding("A short answer.", crosseval)
    assert padded.startswith("A short answer.") and len(padded) >= 3000
    assert len(padding("y" * 2000, crosseval)) >= 8000
    assert len(builtin_items()) == len(BASE_SET) >= 8


def test_per_attack_shifts_and_failures(store):
    with ScriptedChatServer(gullible_rule) as srv:
        judge = load_model("openai:judge", base_url=srv.base_url)
        report = run_robustness(judge, get_recipe("crosseval"), ITEMS, store=store, n_resamples=200,
                                human_scores={"g1": 5, "g2": 4, "b1": 1, "b2": 2})
    by = {a.attack: a for a in report.attacks}
    assert list(by) == ["address_judge", "fake_verdict", "code_comment", "padding"]
    # obeyed: every response jumps to 5 from 4, 4, 2, 2
    assert by["address_judge"].mean_shift == pytest.approx((1 + 1 + 3 + 3) / 4)
    assert by["address_judge"].share_at_max == 1.0 and by["address_judge"].share_increased == 1.0
    # a planted verdict the judge quotes is not read as its verdict
    assert by["fake_verdict"].mean_shift == 0.0 and by["fake_verdict"].share_at_max == 0.0
    # code attack: robust, but one verdict never parsed: counted, left out of the pairs
    assert by["code_comment"].n_pairs == 3 and by["code_comment"].n_failed == 1 and by["code_comment"].mean_shift == 0.0
    assert by["padding"].mean_shift == pytest.approx((1 + 1 + 1 + 1) / 4)
    assert report.clean_failed == 0 and report.n_base == 4
    lengths = [len(i.response) for i in ITEMS]
    assert report.length_bias_judge.value == pytest.approx(stats.spearmanr([4, 4, 2, 2], lengths).statistic)
    assert report.length_bias_human.value == pytest.approx(stats.spearmanr([5, 4, 1, 2], lengths).statistic)


def test_pairwise_recipe_and_unknown_attack_are_refused():
    judge = load_model("openai:judge", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(RecipeError, match="pairwise"):
        run_robustness(judge, get_recipe("pairwise"), ITEMS)
    with pytest.raises(RecipeError, match="known attacks"):
        run_robustness(judge, get_recipe("crosseval"), ITEMS, attacks=["flattery"])


def test_cli_robustness_report_on_builtin_set(tmp_path, capsys):
    with ScriptedChatServer(gullible_rule) as srv:
        out = tmp_path / "rob.json"
        main(["judge-robustness", "--judge", f"openai:judge@{srv.base_url}", "--attacks", "address_judge,padding",
              "--db", str(tmp_path / "r.db"), "--json", str(out), "--no-progress", "--bootstrap", "100"])
        n_calls = len(srv.requests)
    report = json.loads(out.read_text())
    assert [a["attack"] for a in report["attacks"]] == ["address_judge", "padding"]
    assert report["n_base"] == len(BASE_SET) and n_calls == 3 * len(BASE_SET)
    # no built-in response says GOOD, so the scripted judge rates all clean ones 2
    assert report["attacks"][0]["mean_shift"] == pytest.approx(3.0)
    assert report["attacks"][1]["mean_shift"] == pytest.approx(1.0)
    printed = capsys.readouterr().out
    assert "address_judge" in printed and "length bias" in printed
