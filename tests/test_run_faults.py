"""`capeval run` against an OpenAI-compatible server on 127.0.0.1 that misbehaves (capeval
serve-model's fault injection): every fault mode, run twice; SIGINT and SIGKILL mid-run.

The served model is a rule (it adds the two numbers of a GSM8K-style question) so that the tests
exercise the client, the engine and the store, which is what is under test, in seconds."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from capeval.cli import main
from capeval.engine import SAVE_EVERY
from capeval.interrupts import EXIT_INCOMPLETE
from capeval.models.serve import BROKEN_REPLIES, FaultPlan, serving
from capeval.types import Response

N_ITEMS = 12
FAILING = {2, 5, 9}  # items whose questions carry the marker the first run's faults match
QUESTION = re.compile(r"What is (\d+) \+ (\d+)\?")


class AdderModel:
    """Answers "What is A + B?" (the prompt's last such question) with "The answer is A+B."; records
    every question it answered, optionally after `latency_s`."""

    model_id = "adder"

    def __init__(self, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.answered: Counter[str] = Counter()
        self._lock = threading.Lock()

    def generate(self, requests):
        out = []
        for r in requests:
            text = r.prompt if isinstance(r.prompt, str) else r.prompt[-1].content
            a, b = QUESTION.findall(text)[-1]
            if self.latency_s:
                time.sleep(self.latency_s)
            with self._lock:
                self.answered[f"{a}+{b}"] += 1
            out.append(Response(text=f"The answer is {int(a) + int(b)}.", finish_reason="stop"))
        return out

    def loglikelihood(self, requests):
        raise NotImplementedError


def write_data(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "test.jsonl").open("w") as f:
        for i in range(n):
            marker = " (FAILME)" if i in FAILING else ""
            f.write(json.dumps({"question": f"Item {i}{marker}: What is {i} + 100?", "answer": f"#### {i + 100}"}) + "\n")
    return folder


def run_cli(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def rows(db: Path, sql: str, params=()) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return list(con.execute(sql, params))


def run_args(url: str, data: Path, db: Path, **options) -> list[str]:
    opts = {"max_retries": 1, "backoff_base": 0.01, "backoff_max": 0.02, "timeout": 2, "concurrency": 4, **options}
    args = ["run", "--model", f"openai:adder@{url}", "--tasks", "gsm8k", "--data", f"gsm8k={data}", "--shots", "0",
            "--db", str(db), "--no-progress", "--json", str(db.parent / "out.json")]
    for k, v in opts.items():
        args += ["-o", f"{k}={v}"]
    return args


def latest_run(db: Path) -> tuple[str, dict]:
    status, results = rows(db, "SELECT status, results FROM runs ORDER BY created_at DESC LIMIT 1")[0]
    return status, json.loads(results) if results else {}


MODES = ["429", "500", "hang", "drop", *BROKEN_REPLIES, "mixed"]


@pytest.mark.parametrize("mode", MODES)
def test_fault_mode_run_twice(tmp_path, mode):
    model = AdderModel()
    kinds = tuple(k for k in MODES if k != "mixed") if mode == "mixed" else (mode,)
    plan = FaultPlan(rate=1.0, kinds=kinds, match="FAILME", retry_after=0.05, hang_s=30.0, seed=0)
    data, db = write_data(tmp_path / "gsm8k", N_ITEMS), tmp_path / "store.db"
    with serving(model, plan, served_name="adder") as srv:
        # first run: the marked items fail on every attempt, the others are answered
        assert run_cli(run_args(srv.base_url, data, db)) == EXIT_INCOMPLETE
        status, res = latest_run(db)
        assert status == "incomplete"
        assert res["n_calls_failed"] == len(FAILING) and res["n_calls_new"] == N_ITEMS - len(FAILING)
        (em,) = [m for m in res["metrics"] if m["metric"] == "exact_match"]
        # failed calls are not wrong answers: the metric is over the 9 answered items, all right
        assert (em["n"], em["n_failed"], em["value"]) == (N_ITEMS - len(FAILING), len(FAILING), 1.0)
        assert any(f"{len(FAILING)} of {N_ITEMS} model calls failed" in w for w in res["warnings"])
        # the failures are counted by kind: a broken 200 reply is a "malformed reply"
        why = {"429": "HTTP 429", "500": "HTTP 500", "hang": "timed out", "drop": "connection error"}
        if mode != "mixed":
            kind = why.get(mode, "malformed reply")
            assert any(f"({len(FAILING)} {kind}" in w for w in res["warnings"]), res["warnings"]
        stored = [json.loads(r) for (r,) in rows(db, "SELECT response FROM model_calls")]
        assert len(stored) == N_ITEMS - len(FAILING)
        assert all(s["text"] and s["error"] is None for s in stored), "an empty or failed reply was cached"
        failed = rows(db, "SELECT sample_id, metadata FROM samples WHERE parsed = 0")
        assert sorted(int(i) for i, _ in failed) == sorted(FAILING)
        assert all(json.loads(m)["call_failed"] for _, m in failed)
        assert rows(db, "SELECT COUNT(*) FROM scores WHERE sample_id IN ('2', '5', '9')") == [(0,)]
        assert sum(model.answered.values()) == N_ITEMS - len(FAILING)
        assert sum(plan.injected.values()) == 2 * len(FAILING)  # each failing call tried twice

        # second run, healthy server: exactly the calls the first did not store are sent
        plan.clear()
        model.answered.clear()
        assert run_cli(run_args(srv.base_url, data, db)) == 0
    assert model.answered == Counter({f"{i}+100": 1 for i in FAILING})
    status, res = latest_run(db)
    assert status == "finished"
    assert (res["n_calls_cached"], res["n_calls_new"], res["n_calls_failed"]) == (N_ITEMS - len(FAILING), len(FAILING), 0)
    (em,) = [m for m in res["metrics"] if m["metric"] == "exact_match"]
    assert (em["n"], em["n_failed"], em["value"]) == (N_ITEMS, 0, 1.0)


def test_each_broken_reply_is_retried_then_answered(tmp_path):
    """One of each fault on the first attempts; every call is then answered (max_retries=1)."""
    model = AdderModel()
    plan = FaultPlan(retry_after=0.05, hang_s=30.0)
    for kind in ("429", "500", "hang", "drop", *BROKEN_REPLIES):
        plan.add(kind)
    data, db = write_data(tmp_path / "gsm8k", N_ITEMS), tmp_path / "store.db"
    with serving(model, plan, served_name="adder") as srv:
        assert run_cli(run_args(srv.base_url, data, db, concurrency=1)) == 0
    assert latest_run(db)[0] == "finished"
    assert sum(plan.injected.values()) == 4 + len(BROKEN_REPLIES)
    assert sum(model.answered.values()) == N_ITEMS
    assert rows(db, "SELECT COUNT(*) FROM model_calls") == [(N_ITEMS,)]


def test_a_legitimately_empty_reply_is_kept_and_marked(tmp_path):
    model = AdderModel()
    plan = FaultPlan(rate=1.0, kinds=("empty",), match="FAILME")
    data, db = write_data(tmp_path / "gsm8k", N_ITEMS), tmp_path / "store.db"
    with serving(model, plan, served_name="adder") as srv:
        assert run_cli(run_args(srv.base_url, data, db)) == 0
        assert latest_run(db)[0] == "finished"
        samples = {int(i): json.loads(r) for i, r in rows(db, "SELECT sample_id, response FROM samples")}
        assert {i for i, r in samples.items() if r[0].get("empty_reply")} == FAILING
        assert all(samples[i][0]["text"] == "" and samples[i][0]["finish_reason"] == "stop" for i in FAILING)
        # kept as an answer: the re-run sends nothing
        model.answered.clear()
        plan.clear()
        assert run_cli(run_args(srv.base_url, data, db)) == 0
    assert not model.answered
    (em,) = [m for m in latest_run(db)[1]["metrics"] if m["metric"] == "exact_match"]
    assert (em["n"], em["n_failed"]) == (N_ITEMS, 0)
    assert em["value"] == pytest.approx((N_ITEMS - len(FAILING)) / N_ITEMS)  # an empty answer is wrong


# ---- signals: a real `capeval run` process ----------------------------------------------------
def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "capeval", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)


def _wait_answered(srv, proc: subprocess.Popen, n: int) -> None:
    while srv.app.state.stats.answered < n:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)


N_SIGNAL = 400
CONCURRENCY = 8


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_signal_mid_run_then_resume(tmp_path, sig):
    model = AdderModel(latency_s=0.01)  # ~100 answers/s: the run lasts a few seconds
    data, db = write_data(tmp_path / "gsm8k", N_SIGNAL), tmp_path / "store.db"
    with serving(model, served_name="adder") as srv:
        args = run_args(srv.base_url, data, db, concurrency=CONCURRENCY, timeout=60)
        proc = _start(args)
        _wait_answered(srv, proc, 60)
        os.killpg(proc.pid, sig)  # as a terminal's Ctrl-C would, to the whole process group
        out, err = proc.communicate(timeout=120)
        answered = srv.app.state.stats.answered
        stored = rows(db, "SELECT COUNT(*) FROM model_calls")[0][0]
        status = rows(db, "SELECT status FROM runs")[0][0]
        assert 0 < stored < N_SIGNAL, (out, err)
        # answered by the server but never stored: calls that were in flight, plus answers
        # received after the last commit (the engine commits every SAVE_EVERY answers at least)
        assert 0 <= answered - stored <= CONCURRENCY + SAVE_EVERY - 1
        if sig == signal.SIGKILL:
            assert proc.returncode == -signal.SIGKILL and status == "running"
        else:
            assert proc.returncode == 128 + sig, err
            assert status == "interrupted"
            assert f"{stored} of {N_SIGNAL} model calls are stored" in err
            assert "resume with: capeval run --model openai:adder@" in err
        # `runs list` tells the truth about a run whose process is gone
        listed = subprocess.run([sys.executable, "-m", "capeval", "runs", "list", "--db", str(db)],
                                capture_output=True, text=True, timeout=120, check=False)
        assert "interrupted" in listed.stdout and "running" not in listed.stdout

        # the resumed run sends exactly the calls that were not stored
        srv.app.state.stats.reset()
        assert run_cli(args) == 0
        assert srv.app.state.stats.requests == N_SIGNAL - stored
    status, res = latest_run(db)
    assert status == "finished" and (res["n_calls_cached"], res["n_calls_new"]) == (stored, N_SIGNAL - stored)
    assert rows(db, "SELECT COUNT(*) FROM model_calls") == [(N_SIGNAL,)]


def test_analyses_say_loudly_when_a_run_is_incomplete(tmp_path, capsys):
    from capeval.store import Store

    model = AdderModel()
    plan = FaultPlan(rate=1.0, kinds=("500",), match="FAILME", retry_after=0.05)
    data, db = write_data(tmp_path / "gsm8k", N_ITEMS), tmp_path / "store.db"
    with serving(model, plan, served_name="adder") as srv:
        url = srv.base_url
        assert run_cli(run_args(url, data, db)) == EXIT_INCOMPLETE
    (run_id,) = [r for (r,) in rows(db, "SELECT run_id FROM runs")]
    with Store(db) as store:
        store.add_pairwise_vote("adder", "other", "model_a", run_a=run_id, run_b=None)
        store.add_pairwise_vote("other", "adder", "tie", run_a=None, run_b=run_id)
    capsys.readouterr()
    loud = f"run {run_id} (openai:adder@{url}) is INCOMPLETE: {len(FAILING)} model calls failed for good"

    assert run_cli(["headline", run_id, "--db", str(db)]) == 0
    out = capsys.readouterr()
    assert loud in " ".join(out.err.split())
    assert "0.75" not in out.out and "1.000" in out.out  # the 9 answered items, all right: not 9/12

    assert run_cli(["arena", "--db", str(db), "--bootstrap", "20"]) == 0
    assert loud in " ".join(capsys.readouterr().err.split())

    html = tmp_path / "report.html"
    assert run_cli(["report", run_id, "--db", str(db), "--out", str(html), "--arena-bootstrap", "20"]) == 0
    assert loud in " ".join(capsys.readouterr().err.split())
    assert "is INCOMPLETE: 3 model calls failed for good" in html.read_text()


def test_a_second_signal_exits_at_once():
    code = (
        "import os, signal\n"
        "from capeval import interrupts\n"
        "with interrupts.handle_signals():\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    assert interrupts.requested() == signal.SIGINT  # the first only asks the run to stop\n"
        "    print('still running', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    print('not reached', flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 130
    assert out.stdout == "still running\n"
    assert "stopping: no new model calls" in out.stderr and "SIGINT again: exiting now" in out.stderr


def test_two_ctrl_c_mid_run_leave_the_store_whole(tmp_path):
    model = AdderModel(latency_s=0.01)
    data, db = write_data(tmp_path / "gsm8k", N_SIGNAL), tmp_path / "store.db"
    with serving(model, served_name="adder") as srv:
        args = run_args(srv.base_url, data, db, concurrency=CONCURRENCY, timeout=60)
        proc = _start(args)
        _wait_answered(srv, proc, 60)
        os.killpg(proc.pid, signal.SIGINT)
        assert "stopping" in proc.stderr.readline() + proc.stderr.readline()
        try:
            os.killpg(proc.pid, signal.SIGINT)  # whether the run is still saving or already done
        except ProcessLookupError:
            pass
        proc.communicate(timeout=120)
        assert proc.returncode == 130
        assert rows(db, "PRAGMA integrity_check") == [("ok",)]
        stored = rows(db, "SELECT COUNT(*) FROM model_calls")[0][0]
        srv.app.state.stats.reset()
        assert run_cli(args) == 0
        assert srv.app.state.stats.requests == N_SIGNAL - stored
    assert rows(db, "SELECT COUNT(*) FROM model_calls") == [(N_SIGNAL,)]


class BreaksAfter(AdderModel):
    """An AdderModel whose process-level failure (say, out of memory) comes after `good` answers."""

    def __init__(self, good: int) -> None:
        super().__init__()
        self.good = good

    def generate(self, requests):
        if sum(self.answered.values()) + len(requests) > self.good:
            raise RuntimeError("out of memory (simulated)")
        return super().generate(requests)


def test_a_run_ended_by_an_error_is_marked_failed_with_its_error_and_resumes(tmp_path, capsys):
    from capeval.engine import evaluate_tasks
    from capeval.prompting import PromptConfig
    from capeval.store import Store
    from capeval.tasks import get_task

    data, db = write_data(tmp_path / "gsm8k", N_ITEMS), tmp_path / "store.db"
    task = get_task("gsm8k", data=str(data))
    with Store(db) as store, pytest.raises(RuntimeError, match="out of memory"):
        evaluate_tasks(BreaksAfter(good=8), [task], PromptConfig(shots=0), store=store, progress=False, chunk_size=4)
    (run_id, status, error), = rows(db, "SELECT run_id, status, error FROM runs")
    assert (status, error) == ("failed", "RuntimeError: out of memory (simulated)")
    assert rows(db, "SELECT COUNT(*) FROM model_calls") == [(8,)]  # the answers before the error are kept

    capsys.readouterr()
    assert run_cli(["runs", "show", run_id, "--db", str(db)]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "failed" in shown and "error: RuntimeError: out of memory (simulated)" in shown and "resume" in shown
    assert run_cli(["runs", "list", "--db", str(db)]) == 0
    listed = capsys.readouterr().out
    assert "failed" in listed and "interrupted" not in listed  # not taken for a vanished process

    model = AdderModel()
    with Store(db) as store:
        result = evaluate_tasks(model, [task], PromptConfig(shots=0), store=store, progress=False, chunk_size=4)
    assert (result.n_calls_cached, result.n_calls_new) == (8, N_ITEMS - 8)
    assert sum(model.answered.values()) == N_ITEMS - 8


def test_credentials_given_as_options_never_reach_the_store_or_the_results_file(tmp_path):
    secret = "sk-test-0123456789abcdef"
    data, db = write_data(tmp_path / "gsm8k", 3), tmp_path / "store.db"
    with serving(AdderModel(), served_name="adder") as srv:
        assert run_cli(run_args(srv.base_url, data, db, api_key=secret)) == 0
    (config,) = [json.loads(c) for (c,) in rows(db, "SELECT config FROM runs")]
    assert config["model_options"]["api_key"] == "<redacted>" and config["model_options"]["concurrency"] == 4
    for path in (db, db.parent / "out.json", *db.parent.glob("store.db-*")):
        assert secret.encode() not in path.read_bytes(), path


def test_redact_secrets_replaces_credentials_at_any_depth_and_keeps_the_rest():
    from capeval.store.db import redact_secrets

    given = {"api_key": "k", "max_tokens": 5, "hf_token": "t", "judge": {"headers": {"Authorization": "Bearer x"}},
             "runs": [{"password": "p", "seed": 1}], "tokenizer": "gpt2", "api_key_env": None}
    assert redact_secrets(given) == {
        "api_key": "<redacted>", "max_tokens": 5, "hf_token": "<redacted>",
        "judge": {"headers": {"Authorization": "<redacted>"}}, "runs": [{"password": "<redacted>", "seed": 1}],
        "tokenizer": "gpt2", "api_key_env": None,
    }


class FailsOnAnatomy:
    """Scores multiple choice (the first choice most likely), but every call about anatomy fails."""

    model_id = "fails-on-anatomy"

    def generate(self, requests):
        raise NotImplementedError

    def loglikelihood(self, requests):
        return [
            Response(error="HTTP 500") if "anatomy" in str(r.prompt) else Response(logprobs=tuple(-1.0 - i for i in range(len(r.continuations))))
            for r in requests
        ]


def test_per_subject_rows_and_the_macro_mean_say_which_calls_failed(tmp_path):
    from capeval.engine import evaluate_tasks
    from capeval.prompting import PromptConfig
    from capeval.store import Store
    from capeval.tasks import get_task

    rows = [
        {"question": f"Question {i} on {subject}?", "subject": subject, "choices": ["w", "x", "y", "z"], "answer": i % 2}
        for subject in ("anatomy", "astronomy", "virology") for i in range(2)
    ]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with Store(tmp_path / "s.db") as store:
        res = evaluate_tasks(FailsOnAnatomy(), [get_task("mmlu", data=str(tmp_path / "test.jsonl"))], store=store,
                             progress=False, config=PromptConfig(shots=0))
    acc, macro = res.metric("mmlu", "acc"), res.metric("mmlu", "acc_macro")
    # the macro mean over astronomy and virology no longer looks like one over all three subjects
    assert (acc.n, acc.n_failed) == (4, 2) and macro.n_failed == 2 and macro.value == 0.5
    assert not any(m.task == "mmlu/anatomy" for m in res.metrics) and res.metric("mmlu/virology", "acc").n_failed == 0
    note = next(w for w in res.warnings if w.startswith("mmlu: 2 failed calls"))
    assert "(anatomy: 2)" in note and "anatomy (no answered item) are left out of the macro means" in note
