"""`capeval contamination memorisation` end to end: a local GSM8K file, the model a scripted
OpenAI-compatible server on 127.0.0.1 that continues one item verbatim, one nearly and one not."""

from __future__ import annotations

import json

import pytest

from capeval.store import Store
from scripted_chat import ScriptedChatServer

from .test_commands import capeval
from .test_contamination import JULIE, NATALIA, WENG

# What the check gives the model half of: the question as GSM8K renders it, then the worked solution
# (calculator annotations and the final "#### n" line removed, as the task reads them).
FULL = {
    "Natalia": "Question: " + NATALIA["question"] + "\nNatalia sold 48/2 = 24 clips in May. "
    "Natalia sold 48+24 = 72 clips altogether in April and May.",
    "Weng": "Question: " + WENG["question"] + "\nWeng earns 12/60 = $0.2 per minute. "
    "Working 50 minutes, she earned 0.2 x 50 = $10.",
}


def rule(model: str, messages: list[dict[str, str]]) -> str:
    prompt = messages[-1]["content"]
    if "Natalia" in prompt:
        return " " + FULL["Natalia"][len(prompt) :].strip() + "\n\nQuestion: something else"  # verbatim
    if "Weng" in prompt:
        return " " + FULL["Weng"][len(prompt) :].strip().replace("earned", "made")  # one word off
    return " I would rather talk about the weather."


def test_memorisation_command_with_a_scripted_server(tmp_path):
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n" for r in (NATALIA, WENG, JULIE)))
    out_json, db = tmp_path / "mem.json", tmp_path / "mem.db"
    args = ["contamination", "memorisation", "--task", "gsm8k", "--data", str(data), "--db", str(db), "--json", str(out_json)]
    with ScriptedChatServer(rule) as srv:
        out = capeval(*args, "--model", f"openai:parrot@{srv.base_url}", "--model-option", "max_retries=0")
        prompts = [r["prompt"] for r in srv.requests]
    assert out.returncode == 0, out.stderr

    # each item is cut after half of its words and sent once, greedy, as a plain completion
    assert len(prompts) == 3 and {r["temperature"] for r in srv.requests} == {0.0}
    for name, full in FULL.items():
        (p,) = [p for p in prompts if name in p]
        assert full.startswith(p) and len(p.split()) == len(full.split()) // 2

    res = json.loads(out_json.read_text())
    by = {i["id"]: i for i in res["items"]}
    assert by["0"]["exact"] and by["0"]["rouge_l"] == 1.0  # text after the true rest is not held against it
    assert not by["1"]["exact"] and 0.9 <= by["1"]["rouge_l"] < 1.0
    assert not by["2"]["exact"] and by["2"]["rouge_l"] < 0.2
    assert res["exact_rate"] == pytest.approx(1 / 3)
    assert res["near_exact_rate"] == pytest.approx(2 / 3)
    assert "exact continuation rate" in out.stdout and "0.333" in out.stdout
    assert "near-exact rate (ROUGE-L >= 0.9)" in out.stdout and "0.667" in out.stdout

    # the calls were cached in the store: with the server gone, a second check gives the same numbers
    rerun = capeval(*args, "--model", f"openai:parrot@{srv.base_url}", "--model-option", "max_retries=0")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(out_json.read_text())["exact_rate"] == pytest.approx(1 / 3)
    with Store(db) as store:
        assert store.query("SELECT COUNT(*) AS n FROM model_calls")[0]["n"] == 3
