"""The engine on the real bundled model: cached calls, dedup, stored samples, CIs, resume."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from capeval.engine import evaluate_tasks, execute
from capeval.prompting import PromptConfig
from capeval.tasks import get_task
from capeval.types import GenerationParams, Request

pytestmark = pytest.mark.slow


def test_identical_calls_are_sent_once_and_cached(smollm2, store):
    req = Request(kind="generate", prompt="The capital of France is", params=GenerationParams(max_tokens=4))
    other = Request(kind="loglikelihood", prompt="2 + 2 =", continuations=(" 4", " 5"))
    responses, stats = execute(smollm2, [req, req, other], store)
    assert (stats.new, stats.cached, stats.duplicates) == (2, 0, 1)
    assert responses[0] == responses[1] and responses[0].text
    assert len(responses[2].logprobs) == 2
    again, stats2 = execute(smollm2, [req, other], store)
    assert (stats2.new, stats2.cached) == (0, 2)
    assert again[0].text == responses[0].text and again[0].cached
    assert again[1].logprobs == pytest.approx(responses[2].logprobs)


def test_evaluate_stores_every_sample_and_reports_ci(smollm2, store):
    task = get_task("mtbench-category")
    result = evaluate_tasks(smollm2, [task], PromptConfig(shots=2), store=store, limit=6, progress=False)
    acc = result.metric("mtbench-category", "acc")
    assert acc.n == 6 and 0.0 <= acc.ci_low <= acc.value <= acc.ci_high <= 1.0
    assert acc.warning and "n=6 is small" in acc.warning  # 6 items cannot separate models
    assert result.n_calls_new == 6 and result.n_calls_cached == 0
    samples = list(store.iter_samples(result.run_id))
    assert len(samples) == 6
    s = samples[0]
    assert s["prompt"].endswith("Which kind of task is this?\nA. writing\nB. roleplay\nC. reasoning\nD. math\n"
                                "E. coding\nF. extraction\nG. STEM knowledge\nH. humanities knowledge\nAnswer:")
    assert len(s["response"][0]["logprobs"]) == 8
    assert s["extracted"] in "ABCDEFGH" and s["scores"]["acc"] in (0.0, 1.0)
    mean_acc = sum(x["scores"]["acc"] for x in samples) / 6
    assert acc.value == pytest.approx(mean_acc)
    rerun = evaluate_tasks(smollm2, [task], PromptConfig(shots=2), store=store, limit=6, progress=False)
    assert (rerun.n_calls_new, rerun.n_calls_cached) == (0, 6)
    assert rerun.metric("mtbench-category", "acc").value == acc.value


def _calls(db):
    with sqlite3.connect(db) as c:
        try:
            return dict(c.execute("SELECT key, created_at FROM model_calls").fetchall())
        except sqlite3.OperationalError:  # the run has created the file but not its tables yet
            return {}


def test_sigkill_halfway_then_rerun_resends_no_finished_call(tmp_path):
    db = tmp_path / "resume.db"
    cmd = [sys.executable, "-m", "capeval", "run", "--model", "smollm2-135m-instruct", "--tasks", "mtbench-category",
           "--shots", "1", "--save-every", "4", "--db", str(db), "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            if db.exists() and len(_calls(db)) >= 12:
                break
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before = _calls(db)
    assert 12 <= len(before) < 80, "the run should have been killed halfway"
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    m = re.search(r"model calls: (\d+) cached, (\d+) new", out.stdout)
    assert m, out.stdout
    cached, new = int(m.group(1)), int(m.group(2))
    assert cached == len(before) and cached + new == 80
    after = _calls(db)
    assert all(after[k] == t for k, t in before.items()), "a finished call was sent again"


def test_progress_shows_a_bar_only_for_a_stage_that_tracks_something(capsys):
    # every call cached, a task scored without a judge: nothing to show, and no empty line either
    from capeval.engine import Progress

    with Progress(True):
        pass
    assert capsys.readouterr().out == ""
    with Progress(True) as bar:
        advance = bar.track("calls", 3)
        advance(3)
    out = capsys.readouterr().out
    assert "calls" in out and "3/3" in out
    with Progress(False) as bar:
        bar.track("calls", 3)(3)
    assert capsys.readouterr().out == ""
