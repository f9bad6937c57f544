"""`capeval run --task-option TASK.KEY=VALUE`: HumanEval pass@k from several sampled completions per
problem, run from the command line against a scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter

import pytest

from capeval.store import Store
from capeval.tasks.humaneval import humaneval_rows
from scripted_chat import ScriptedChatServer

WRONG_BODY = "    return None\n"


def capeval(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "capeval", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_humaneval_n_samples_and_k_values_from_the_command_line(tmp_path):
    rows = humaneval_rows("test")[:2]
    asked: Counter[str] = Counter()
    lock = threading.Lock()

    def rule(model: str, messages: list[dict[str, str]]) -> str:
        prompt = messages[-1]["content"]
        with lock:
            asked[prompt] += 1
            nth = asked[prompt]
        # the first problem: 2 of its 3 samples pass; the second: none does
        if prompt == rows[0]["prompt"] and nth != 2:
            return rows[0]["canonical_solution"]
        return WRONG_BODY

    out_json = tmp_path / "result.json"
    with ScriptedChatServer(rule) as srv:
        out = capeval(
            "run", "--model", f"openai:coder@{srv.base_url}", "--tasks", "humaneval", "--limit", "2",
            "--task-option", "humaneval.n_samples=3", "--task-option", "humaneval.k_values=[1,3]",
            "--model-option", "max_retries=0", "--db", str(tmp_path / "run.db"), "--json", str(out_json),
            "--no-progress",
        )
        sent = list(srv.requests)
    assert out.returncode == 0, out.stderr

    # 3 sampled completions per problem, at the Codex paper's temperature
    assert Counter(r["prompt"] for r in sent) == {rows[0]["prompt"]: 3, rows[1]["prompt"]: 3}
    assert {r["temperature"] for r in sent} == {0.8}

    metrics = {m["metric"]: m for m in json.loads(out_json.read_text())["metrics"] if m["task"] == "humaneval"}
    assert set(metrics) == {"pass@1", "pass@3"}
    # unbiased pass@k per problem (n=3): first c=2 -> pass@1 2/3, pass@3 1; second c=0 -> 0, 0
    assert metrics["pass@1"]["value"] == pytest.approx((2 / 3 + 0) / 2)
    assert metrics["pass@3"]["value"] == pytest.approx((1 + 0) / 2)
    assert metrics["pass@1"]["n"] == metrics["pass@3"]["n"] == 2
    with Store(tmp_path / "run.db") as store:
        (run,) = store.runs()
    # the run records how its tasks were built
    assert json.loads(run["config"])["task_options"] == {"humaneval": {"n_samples": 3, "k_values": [1, 3]}}


@pytest.mark.parametrize(
    ("option", "message", "hint"),
    [
        ("humaneval.n_sample=3", "task 'humaneval' has no option 'n_sample'", "did you mean 'n_samples'?"),
        ("humaneval.data=./x.jsonl", "task 'humaneval' has no option 'data'", "--data humaneval=PATH"),
        ("gsm8k.n_samples=3", "--task-option names tasks not being run: gsm8k", "the run's tasks: humaneval"),
        ("humaneval.k_values=[1,10]", "humaneval: pass@k needs 1 <= k <= n_samples (1), got k_values [1, 10]",
         "sample at least 10 completions per problem"),
        ("humaneval=3", "--task-option expects TASK.KEY=VALUE, got 'humaneval=3'", "humaneval.n_samples=10"),
    ],
)
def test_bad_task_options_are_one_line_errors(tmp_path, option, message, hint):
    # the options are checked before any model is asked: the server address is never contacted
    out = capeval(
        "run", "--model", "openai:coder@http://127.0.0.1:9/v1", "--tasks", "humaneval", "--limit", "1",
        "--task-option", option, "--db", str(tmp_path / "x.db"), "--no-progress",
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines()[0] == f"error: {message}"
    assert hint in out.stderr
    assert "Traceback" not in out.stderr
