"""The core CLI: tasks listing, clear one-line errors, and run listing/export from a store."""

import csv
import json
import subprocess
import sys

from capeval.store import Store
from capeval.types import MetricResult, RunResult, Score


def capeval(*args, env=None):
    return subprocess.run([sys.executable, "-m", "capeval", *args], capture_output=True, text=True, timeout=120, env=env, check=False)


def test_tasks_lists_builtin_tasks():
    out = capeval("tasks", "--json")
    assert out.returncode == 0, out.stderr
    names = {t["name"] for t in json.loads(out.stdout)["tasks"]}
    assert "mtbench-category" in names


def test_unknown_task_and_model_are_one_line_with_close_names(tmp_path):
    out = capeval("run", "--tasks", "mtbench-categry", "--db", str(tmp_path / "x.db"))
    assert out.returncode == 2
    assert out.stderr.splitlines()[0] == "error: unknown task 'mtbench-categry'"
    assert out.stderr.splitlines()[1] == "  hint: did you mean mtbench-category, mtbench-bpb?"  # the closest first
    assert "Traceback" not in out.stderr
    out = capeval("run", "--model", "smollm-135m-instruct", "--tasks", "mtbench-category", "--db", str(tmp_path / "x.db"))
    assert out.returncode == 2
    assert "unknown model 'smollm-135m-instruct'" in out.stderr and "smollm2-135m-instruct" in out.stderr


def test_models_lists_bundled_status_and_every_backend(tmp_path):
    import os

    env = {**os.environ, "CAPEVAL_CACHE_DIR": str(tmp_path / "cold"), "COLUMNS": "200"}
    out = capeval("models", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("de-quantised on first use") == 2  # an empty cache: neither is cached
    for text in ("hf:PATH_OR_HUB_ID", "openai:MODEL[@URL]", "pip install 'capeval[vllm]'", "ray:SPEC", "capeval[ray]"):
        assert text in out.stdout


def test_unknown_option_is_a_usage_error():
    """Typer raises its vendored click's usage errors: shown as usage, exit 2, no traceback hint."""
    for args in (("run", "--bogus"), ("contamination", "memorisation", "--foo")):
        out = capeval(*args)
        assert out.returncode == 2, out.stderr
        assert "No such option" in out.stderr and "Usage:" in out.stderr and "--debug" not in out.stderr


def test_bad_data_argument(tmp_path):
    out = capeval("run", "--tasks", "mtbench-category", "--data", "nonsense", "--db", str(tmp_path / "x.db"))
    assert out.returncode == 2 and "--data expects TASK=PATH" in out.stderr


def test_runs_list_show_export(tmp_path):
    db = tmp_path / "r.db"
    with Store(db) as s:
        run_id = s.start_run("m", "my-model", ["t"], {})
        s.save_samples(run_id, [{"task": "t", "sample_id": "s1", "prompt": "Q?", "response": [{"text": "A"}]}],
                       [Score("s1", "t", {"acc": 1.0}, "A", True, "A")])
        s.finish_run(RunResult(run_id, "my-model", ("t",), (MetricResult("t", "acc", 1.0, 1.0, 1.0, 1),)))
    out = capeval("runs", "list", "--db", str(db))
    assert out.returncode == 0 and run_id in out.stdout and "my-model" in out.stdout
    out = capeval("runs", "show", run_id[:12], "--db", str(db))
    assert out.returncode == 0 and "Q?" in out.stdout and "'A'" in out.stdout
    jl, cs = tmp_path / "e.jsonl", tmp_path / "e.csv"
    assert capeval("runs", "export", run_id, "--out", str(jl), "--db", str(db)).returncode == 0
    (row,) = [json.loads(x) for x in jl.read_text().splitlines()]
    assert row["prompt"] == "Q?" and row["scores"] == {"acc": 1.0} and row["extracted"] == "A"
    assert capeval("runs", "export", run_id, "--out", str(cs), "--db", str(db)).returncode == 0
    (crow,) = list(csv.DictReader(cs.open()))
    assert crow["acc"] == "1.0" and crow["sample_id"] == "s1"
    out = capeval("runs", "show", "nope", "--db", str(db))
    assert out.returncode == 2 and "no run 'nope'" in out.stderr
