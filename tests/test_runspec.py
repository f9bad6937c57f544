"""Every `capeval run` option is one RunSpec field and reaches the run on every path: the plain
command, --prompt-variants and capeval.evaluate, each against scripted OpenAI-compatible servers on
127.0.0.1 (the model under test and a judge)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import capeval
from capeval import commands_core
from capeval.judge.recipes import recipe_path
from capeval.runspec import RunSpec
from capeval.store import Store
from capeval.tasks.humaneval import humaneval_rows
from capeval.tasks.registry import TASKS
from scripted_chat import ScriptedChatServer

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SYSTEM = "SYSTEM-PROMPT-5d1c: answer briefly."
RUBRIC = "EDITED RUBRIC 91be: reward answers that show their steps."
API_KEY = "sk-runspec-test"

# each option of `capeval run` and the RunSpec field it fills
OPTION_FIELDS = {
    "--model": "model", "--tasks": "tasks", "--shots": "shots", "--cot": "cot", "--system": "system",
    "--chat": "chat", "--limit": "limit", "--sample": "sample", "--stratify": "stratify",
    "--batch-size": "batch_size", "--concurrency": "concurrency", "--base-url": "base_url", "--db": "db",
    "--include-path": "include_paths", "--data": "data", "--task-option": "task_options", "--strict": "strict",
    "--model-option": "model_options", "--judge": "judge", "--judge-option": "judge_options", "--recipe-file": "recipe_files",
    "--prompt-variants": "prompt_variants", "--seed": "seed", "--json": "json_out", "--no-progress": "progress",
    "--save-every": "save_every", "--cache": "cache",
}


def test_every_run_option_fills_one_runspec_field(tmp_path, monkeypatch):
    app = typer.Typer()
    commands_core.register(app)
    command = typer.main.get_command(app)
    run_params = command.commands["run"].params  # type: ignore[attr-defined]
    options = {p.opts[0] for p in run_params if p.param_type_name == "option" and p.opts[0] != "--help"}
    assert options == set(OPTION_FIELDS)
    fields = set(RunSpec.__dataclass_fields__)
    assert set(OPTION_FIELDS.values()) <= fields

    seen: list[RunSpec] = []
    monkeypatch.setattr(commands_core, "run_spec", seen.append)
    args = [
        "run", "--model", "openai:m", "--tasks", "gsm8k,crosseval", "--shots", "2", "--cot", "--system", "S",
        "--chat", "--sample", "4", "--stratify", "crosseval=capability", "--batch-size", "3", "--concurrency", "5",
        "--base-url", "http://127.0.0.1:1/v1", "--db", str(tmp_path / "s.db"), "--include-path", str(tmp_path),
        "--data", "gsm8k=./g", "--task-option", "crosseval.x=[1,2]", "--strict", "-o", "api_key=k", "--judge", "openai:j",
        "--judge-option", "max_retries=2",
        "--recipe-file", str(tmp_path / "r.jinja"), "--prompt-variants", "3", "--seed", "7",
        "--json", str(tmp_path / "o.json"), "--no-progress", "--save-every", "9", "--cache", "refresh",
    ]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    (spec,) = seen
    assert spec == RunSpec(
        model="openai:m", tasks=["gsm8k", "crosseval"], shots=2, cot=True, system="S", chat=True, seed=7,
        prompt_variants=3, limit=None, sample=4, stratify=["crosseval=capability"], batch_size=3, concurrency=5,
        base_url="http://127.0.0.1:1/v1", model_options={"api_key": "k"}, judge="openai:j", judge_options={"max_retries": 2},
        recipe_files=[tmp_path / "r.jinja"], include_paths=[tmp_path], data={"gsm8k": "./g"},
        task_options={"crosseval": {"x": (1, 2)}}, strict=True, db=tmp_path / "s.db", save_every=9,
        cache="refresh", progress=False, json_out=tmp_path / "o.json",
    )


def write_inputs(tmp: Path) -> dict[str, Path]:
    """A clean GSM8K copy (test and train), a YAML task with its data, an edited CrossEval recipe."""
    gsm = tmp / "gsm8k"
    gsm.mkdir()
    rows = [(f"Tom has {a} apples and buys {b} more. How many apples does he have?", a + b) for a, b in
            [(2, 3), (4, 5), (6, 1), (7, 2)]]
    for split, part in (("test", rows[:3]), ("train", rows[3:])):
        (gsm / f"{split}.jsonl").write_text(
            "".join(json.dumps({"question": q, "answer": f"{q.split()[2]} plus more.\n#### {n}"}) + "\n" for q, n in part),
            encoding="utf-8",
        )
    tasks = tmp / "yaml_tasks"
    tasks.mkdir()
    (tasks / "colours.jsonl").write_text(
        "".join(json.dumps({"id": f"c{i}", "question": f"Name colour {i}.", "answer": c, "kind": k}) + "\n"
                for i, (c, k) in enumerate([("red", "warm"), ("blue", "cold"), ("orange", "warm"), ("green", "cold")])),
        encoding="utf-8",
    )
    (tasks / "colours.yaml").write_text(
        "name: colours\nsource: {local: colours.jsonl}\nsplit: test\nshots: 0\noutput_type: generate\n"
        'question: "{{ question }}"\ntarget: "{{ answer }}"\nscorer: exact_match\nmetrics: [exact_match]\n'
        'metadata: {kind: "{{ kind }}"}\n',
        encoding="utf-8",
    )
    text = recipe_path("crosseval").read_text(encoding="utf-8")
    recipe = tmp / "my_crosseval.jinja"
    recipe.write_text(text.replace("{% block system %}\n", "{% block system %}\n" + RUBRIC + "\n", 1), encoding="utf-8")
    return {"gsm8k": gsm, "include": tasks, "recipe": recipe}


HUMANEVAL = humaneval_rows("test")[0]
HUMANEVAL_PROMPTS = [r["prompt"] for r in humaneval_rows("test")]


def model_rule(model: str, messages: list[dict[str, str]]) -> str:
    prompt = messages[-1]["content"]
    if HUMANEVAL["prompt"] in prompt:
        return HUMANEVAL["canonical_solution"]
    return "The answer is 5."


def judge_rule(model: str, messages: list[dict[str, str]]) -> str:
    return "Fine.\n\nEvaluation Score\nScore: 4/5\nRating: [[7]]"


def run_path(path: str, tmp: Path, mut: str, judge: str, items: dict[str, Any]) -> list[dict[str, Any]]:
    """One run on `path` (plain, variants, api) with every option set; the stored runs' rows."""
    inputs = write_inputs(tmp)
    db = tmp / "runs.db"
    tasks = ["gsm8k", "crosseval", "humaneval", "colours"]
    if path == "api":
        capeval.evaluate(
            tasks, "openai:mut", judge=f"openai:judge@{judge}", shots=1, cot=True, system=SYSTEM, chat=True, seed=11,
            strict=True, data={"gsm8k": str(inputs["gsm8k"]), "crosseval": str(FIXTURES / "crosseval")},
            task_options={"humaneval": {"n_samples": 2, "k_values": (1, 2)}}, include_paths=[inputs["include"]],
            recipe_files=[inputs["recipe"]], judge_options={"max_retries": 1}, db=db, save_every=3, cache="refresh",
            batch_size=2, concurrency=3, base_url=mut, api_key=API_KEY,
            **({"limit": items["limit"]} if "limit" in items else {"sample": items["sample"], "stratify": items["stratify"]}),
        )
    else:
        chosen = ["--limit", str(items["limit"])] if "limit" in items else [
            "--sample", str(items["sample"]), *[a for s in items["stratify"] for a in ("--stratify", s)]]
        cmd = [
            sys.executable, "-m", "capeval", "run", "--model", "openai:mut", "--tasks", ",".join(tasks),
            "--shots", "1", "--cot", "--system", SYSTEM, "--chat", "--seed", "11", "--strict", *chosen,
            "--data", f"gsm8k={inputs['gsm8k']}", "--data", f"crosseval={FIXTURES / 'crosseval'}",
            "--task-option", "humaneval.n_samples=2", "--task-option", "humaneval.k_values=[1,2]",
            "--include-path", str(inputs["include"]), "--recipe-file", str(inputs["recipe"]),
            "--judge", f"openai:judge@{judge}", "--judge-option", "max_retries=1", "--db", str(db), "--save-every", "3", "--cache", "refresh",
            "--batch-size", "2", "--concurrency", "3", "--base-url", mut, "-o", f"api_key={API_KEY}",
            "--json", str(tmp / "out.json"), "--no-progress",
        ]
        if path == "variants":
            cmd += ["--prompt-variants", "2"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False,
                             env={**os.environ, "COLUMNS": "300"})
        assert out.returncode == 0, out.stderr + out.stdout
        assert json.loads((tmp / "out.json").read_text())["run_id"]
    with Store(db) as store:
        return [dict(r) for r in reversed(store.runs())]


@pytest.fixture
def forget_yaml_task():
    """capeval.evaluate registers the included YAML task in this process: forget it after the test,
    so the next test's copy (another folder) is not a second origin for the same name."""
    yield
    TASKS.pop("colours", None)
    TASKS.origins.pop("colours", None)


@pytest.mark.usefixtures("forget_yaml_task")
@pytest.mark.parametrize("items", [{"limit": 2}, {"sample": 2, "stratify": ["colours=kind"]}], ids=["limit", "sample"])
@pytest.mark.parametrize("path", ["plain", "variants", "api"])
def test_every_option_reaches_the_run_on_every_path(tmp_path, path, items):
    with ScriptedChatServer(model_rule) as mut, ScriptedChatServer(judge_rule) as judge:
        runs = run_path(path, tmp_path, mut.base_url, judge.base_url, items)
        model_calls, model_auth = list(mut.requests), list(mut.authorizations)
        judge_calls = list(judge.requests)

    # --prompt-variants 2: a second run, variant 1 of the tasks that ship paraphrases (gsm8k)
    assert len(runs) == (2 if path == "variants" else 1)
    assert [json.loads(r["config"]).get("prompt_variant") for r in runs] == ([0, 1] if path == "variants" else [None])
    first = runs[0]
    assert json.loads(first["tasks"]) == ["gsm8k", "crosseval", "humaneval", "colours"]
    for run in runs:
        config = json.loads(run["config"])
        # the prompt: --shots --cot --system --chat --seed
        assert {k: config["prompt"][k] for k in ("shots", "cot", "system", "chat", "seed")} == {
            "shots": 1, "cot": True, "system": SYSTEM, "chat": True, "seed": 11}
        # the items: --limit, or --sample with --stratify (a task's own field)
        assert config["limit"] == items.get("limit") and config["sample"] == items.get("sample")
        assert config["stratify"] == ({"colours": "kind"} if "stratify" in items else {})
        # the backend: --batch-size --concurrency --base-url --model-option; the judge's own options
        # the key reached the server (below) but not the store: credentials are recorded redacted
        assert config["model_options"] == {"batch_size": 2, "concurrency": 3, "base_url": mut.base_url, "api_key": "<redacted>"}
        assert config["judge"] == f"openai:judge@{judge.base_url}"
        # --task-option, --recipe-file, --strict, --save-every, --cache
        assert config["task_options"] == {"humaneval": {"n_samples": 2, "k_values": [1, 2]}}
        assert config["recipe_files"] == [str(tmp_path / "my_crosseval.jinja")]
        assert config["strict"] is True and config["save_every"] == 3 and config["cache"] == "refresh"
        assert run["model_spec"] == "openai:mut"
        assert run["status"] == "finished"
        # --sample's stratified subset is recorded per task (variant 1 runs only GSM8K)
        if "sample" in items:
            assert config["subsets"]["gsm8k"]["seed"] == 11
            assert "colours" not in config["subsets"] or config["subsets"]["colours"]["stratify"] == "kind"
    if "sample" in items:
        assert json.loads(first["config"])["subsets"]["colours"]["stratify"] == "kind"
    # the judge's own options (--judge-option, judge_options=), and --concurrency (concurrency=) on every path
    assert json.loads(first["config"]).get("judge_options") == {"concurrency": 3, "max_retries": 1}

    # requests: --base-url and the model options reached the model's backend; --system its messages
    assert model_calls and {r["model"] for r in model_calls} == {"mut"}
    assert set(model_auth) == {f"Bearer {API_KEY}"}
    assert all(r["messages"][0] == {"role": "system", "content": SYSTEM} for r in model_calls)
    # --data: GSM8K's questions come from the local copy
    asked = [r["messages"][-1]["content"] for r in model_calls]
    assert any("Tom has 2 apples" in a or "Tom has 4 apples" in a or "Tom has 6 apples" in a for a in asked)
    # --include-path: the YAML task was asked
    assert any("Name colour" in a for a in asked)
    # --task-option humaneval.n_samples=2: each of the 2 HumanEval problems asked twice (it ships
    # no paraphrases, so --prompt-variants runs it once)
    problems = Counter(p for a in asked for p in HUMANEVAL_PROMPTS if p in a)
    assert list(problems.values()) == [2, 2]
    # --judge and --recipe-file: the judge rated CrossEval answers with the edited rubric
    systems = [r["messages"][0]["content"] for r in judge_calls if r["messages"][0]["role"] == "system"]
    assert systems and all(RUBRIC in s for s in systems)
    with Store(tmp_path / "runs.db") as store:
        result = store.run_result(first["run_id"])
    assert result is not None
    assert result.metric("crosseval", "rating").value == pytest.approx(4.0)
    n = {t: result.metric(t, m).n for t, m in (("gsm8k", "exact_match"), ("colours", "exact_match"), ("humaneval", "pass@1"))}
    assert n == {"gsm8k": 2, "colours": 2, "humaneval": 2}
    # --limit 2 / --sample 2 chose each task's items
    subsets = json.loads(first["config"])["subsets"]
    assert {t: (d["selection"], d["n"]) for t, d in subsets.items()} == {
        t: ("limit" if "limit" in items else "sample", 2) for t in ("gsm8k", "crosseval", "humaneval", "colours")}


def test_mtbench_options_reach_its_models_through_the_runspec(tmp_path):
    """`capeval mtbench` loads its models and store through RunSpec: --base-url and --system reach
    the model under test, --concurrency the judge too, --recipe-file the judge's prompt."""
    recipe = tmp_path / "my_single.jinja"
    text = recipe_path("single").read_text(encoding="utf-8")
    recipe.write_text(text.replace("{% block system %}\n", "{% block system %}\n" + RUBRIC + "\n", 1), encoding="utf-8")
    with ScriptedChatServer(model_rule) as mut, ScriptedChatServer(judge_rule) as judge:
        out = subprocess.run(
            [sys.executable, "-m", "capeval", "mtbench", "--model", "openai:mut", "--base-url", mut.base_url,
             "--judge", f"openai:judge@{judge.base_url}", "--categories", "writing", "--limit", "1",
             "--system", SYSTEM, "--concurrency", "2", "--recipe-file", str(recipe), "--db", str(tmp_path / "m.db"),
             "--json", str(tmp_path / "mt.json"), "--no-progress"],
            capture_output=True, text=True, timeout=600, check=False, env={**os.environ, "COLUMNS": "300"},
        )
        model_calls, judge_calls = list(mut.requests), list(judge.requests)
    assert out.returncode == 0, out.stderr + out.stdout
    # two turns of one question, each with the system prompt; the judge rated both with the edited recipe
    assert len(model_calls) == 2 and all(r["messages"][0] == {"role": "system", "content": SYSTEM} for r in model_calls)
    assert len(judge_calls) == 2 and all(RUBRIC in r["messages"][0]["content"] for r in judge_calls)
    score = next(m for m in json.loads((tmp_path / "mt.json").read_text())["metrics"] if m["metric"] == "score")
    assert score["value"] == pytest.approx(7.0) and score["n"] == 2


def test_evaluate_spec_runs_prompt_variants_and_summarises_them(tmp_path):
    inputs = write_inputs(tmp_path)
    with ScriptedChatServer(model_rule) as mut:
        outcome = capeval.evaluate_spec(RunSpec(
            model="openai:mut", tasks=["gsm8k"], base_url=mut.base_url, data={"gsm8k": str(inputs["gsm8k"])},
            prompt_variants=2, limit=2, db=tmp_path / "v.db", progress=False,
        ))
        prompts = {r["prompt"] for r in mut.requests}  # no --chat: plain completions
    assert [r.config["prompt"]["variant"] for r in outcome.results] == [0, 1]
    assert outcome.result is outcome.results[0]
    # two templates of the same 2 items: 4 distinct prompts, one summary row per metric
    assert len(prompts) == 4
    assert outcome.sensitivity is not None
    (row,) = [r for r in outcome.sensitivity if r.metric == "exact_match"]
    assert (row.task, row.n_variants) == ("gsm8k", 2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"shots": -1}, "--shots must be 0 or more, got -1"),
        ({"limit": 0}, "--limit must be at least 1, got 0"),
        ({"sample": -3}, "--sample must be at least 1, got -3"),
        ({"limit": 5, "sample": 10}, "--limit and --sample both choose the items; give one"),
    ],
)
def test_resolve_refuses_unusable_shots_limit_and_sample_before_any_model_loads(monkeypatch, options, message):
    from capeval.errors import CapevalError
    from capeval.runspec import resolve

    def no_load(self, loaded=None):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(RunSpec, "load_model", no_load)
    with pytest.raises(CapevalError) as e:
        resolve(RunSpec(model="openai:never-loaded", tasks=["mtbench-category"], **options))
    assert str(e.value).startswith(message)
