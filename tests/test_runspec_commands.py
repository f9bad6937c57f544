"""The commands that evaluate outside `capeval run` fill a RunSpec too: `capeval contamination
memorisation` and `ngram` (a model and a task's items), `capeval judge-check` and `judge-robustness`
(a judge alone). Each option is one RunSpec field (or the command's own), and each reaches the
model, the task or the store: checked in process against scripted OpenAI-compatible servers on
127.0.0.1, with every model load recorded."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import capeval
import capeval.models
from capeval import runspec
from capeval.analysis import commands as analysis_commands
from capeval.errors import CapevalError, DatasetError
from capeval.interpret import commands as interpret_commands
from capeval.judge import alter_commands, bench_commands
from capeval.judge import commands as judge_commands
from capeval.judge.recipes import recipe_path
from capeval.runspec import RunSpec
from capeval.store import Store
from capeval.tasks.registry import TASKS
from scripted_chat import ScriptedChatServer

# each command's options: the RunSpec field each fills, or None for the command's own settings
# (what it measures and how), which are no part of a run
COMMANDS: dict[tuple[str, ...], dict[str, str | None]] = {
    ("contamination", "memorisation"): {
        "--model": "model", "--task": "tasks", "--data": "data", "--limit": "limit", "--include-path": "include_paths",
        "--task-option": "task_options", "--strict": "strict", "--db": "db", "--batch-size": "batch_size",
        "--concurrency": "concurrency", "--base-url": "base_url", "--model-option": "model_options", "--cache": "cache",
        "--no-progress": "progress", "--json": "json_out", "--prefix-fraction": None,
    },
    ("contamination", "ngram"): {
        "--task": "tasks", "--data": "data", "--limit": "limit", "--include-path": "include_paths",
        "--task-option": "task_options", "--strict": "strict", "--json": "json_out", "--corpus": None, "--n": None,
        "--flag-ratio": None,
    },
    ("judge-check",): {
        "--judge": "judge", "--judge-base-url": "judge_options", "--model-option": "judge_options",
        "--concurrency": "concurrency", "--recipe-file": "recipe_files", "--limit": "limit", "--db": "db",
        "--cache": "cache", "--no-progress": "progress", "--json": "json_out", "--data": None, "--format": None,
        "--recipe": None, "--n-references": None, "--ablation": None, "--max-parse-retries": None,
        "--judge-max-tokens": None, "--ablation-csv": None, "--bootstrap": None, "--seed": None,
    },
    ("mtbench",): {
        "--model": "model", "--judge": "judge", "--limit": "limit", "--recipe-file": "recipe_files", "--system": "system",
        "--base-url": "base_url", "--concurrency": "concurrency", "--batch-size": "batch_size",
        "--model-option": "model_options", "--judge-option": "judge_options", "--db": "db", "--cache": "cache",
        "--json": "json_out", "--no-progress": "progress", "--mode": None, "--baseline": None, "--baseline-option": None,
        "--categories": None, "--max-tokens": None,
        "--judge-max-tokens": None, "--fastchat-temperatures": None,
    },
    ("alter",): {
        "--model": "model", "--judge": "judge", "--data": "data", "--system": "system", "--seed": "seed",
        "--model-option": "model_options", "--base-url": "base_url", "--batch-size": "batch_size",
        "--concurrency": "concurrency", "--recipe-file": "recipe_files", "--db": "db", "--cache": "cache",
        "--no-progress": "progress", "--capability": None, "--writer": None, "--dev-fraction": None, "--per-round": None,
        "--rounds": None, "--min-gain": None, "--limit-per-capability": None, "--max-principles": None,
        "--template": None, "--threshold": None, "--min-change": None, "--out": None,
    },
    ("probe",): {
        "--model": "model", "--batch-size": "batch_size", "--model-option": "model_options", "--seed": "seed",
        "--json": "json_out", "--data": None, "--target": None, "--prompt": None, "--entity-column": None,
        "--test-fraction": None,
    },
    ("judge-robustness",): {
        "--judge": "judge", "--judge-base-url": "judge_options", "--model-option": "judge_options",
        "--concurrency": "concurrency", "--recipe-file": "recipe_files", "--limit": "limit", "--db": "db",
        "--cache": "cache", "--no-progress": "progress", "--json": "json_out", "--data": None, "--recipe": None,
        "--attacks": None, "--max-parse-retries": None, "--judge-max-tokens": None, "--bootstrap": None,
    },
}


def app() -> typer.Typer:
    a = typer.Typer()
    analysis_commands.register(a)
    judge_commands.register(a)
    bench_commands.register(a)
    alter_commands.register(a)
    interpret_commands.register(a)
    return a


def _command(path: tuple[str, ...]) -> Any:
    command = typer.main.get_command(app())
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


class Stop(Exception):
    """Raised where the command would load its model: the RunSpec it filled is all the test needs."""


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda p: " ".join(p))
def test_every_option_is_a_runspec_field_or_the_commands_own(path):
    options = {p.opts[0] for p in _command(path).params if p.param_type_name == "option" and p.opts[0] != "--help"}
    assert options == set(COMMANDS[path])
    assert {f for f in COMMANDS[path].values() if f} <= set(RunSpec.__dataclass_fields__)


def _filled(monkeypatch, args: list[str], where: str) -> RunSpec:
    """The RunSpec a command filled: recorded where it builds its tasks or loads its judge."""
    seen: list[RunSpec] = []

    def record(spec: RunSpec, *a: Any, **k: Any) -> Any:
        seen.append(spec)
        raise Stop

    if where == "tasks":
        monkeypatch.setattr(runspec, "build_tasks", record)
    else:
        monkeypatch.setattr(RunSpec, "load_model" if where == "model" else "load_judge", record)
    out = CliRunner().invoke(app(), args)
    assert isinstance(out.exception, Stop), out.output
    (spec,) = seen
    return spec


def test_memorisation_and_ngram_fill_the_runspec(tmp_path, monkeypatch):
    common = ["--task", "gsm8k", "--data", str(tmp_path / "g"), "--limit", "7", "--include-path", str(tmp_path),
              "--task-option", "gsm8k.x=[1,2]", "--strict", "--json", str(tmp_path / "o.json")]
    spec = _filled(monkeypatch, [
        "contamination", "memorisation", "--model", "openai:m", *common, "--db", str(tmp_path / "s.db"),
        "--batch-size", "3", "-c", "5", "--base-url", "http://127.0.0.1:1/v1", "-o", "api_key=k", "--cache", "refresh",
        "--no-progress", "--prefix-fraction", "0.3"], "tasks")
    items = {"tasks": ["gsm8k"], "data": {"gsm8k": str(tmp_path / "g")}, "limit": 7, "include_paths": [tmp_path],
             "task_options": {"gsm8k": {"x": (1, 2)}}, "strict": True, "json_out": tmp_path / "o.json"}
    assert spec == RunSpec(
        model="openai:m", db=tmp_path / "s.db", batch_size=3, concurrency=5, base_url="http://127.0.0.1:1/v1",
        model_options={"api_key": "k"}, cache="refresh", progress=False, **items)
    spec = _filled(monkeypatch, ["contamination", "ngram", *common, "--corpus", str(tmp_path / "c.txt")], "tasks")
    assert spec == RunSpec(**items)


@pytest.mark.parametrize("command", ["judge-check", "judge-robustness"])
def test_judge_commands_fill_the_runspec(tmp_path, monkeypatch, command):
    data = tmp_path / "rated.csv"
    data.write_text("prompt,response,human_score\nq,a,3\n")
    recipe = tmp_path / "r.jinja"
    recipe.write_text(recipe_path("single").read_text(encoding="utf-8"))
    spec = _filled(monkeypatch, [
        command, "--judge", "openai:j", "--data", str(data), "--recipe", "single", "--recipe-file", str(recipe),
        "--judge-base-url", "http://127.0.0.1:1/v1", "-o", "api_key=k", "-o", "max_retries=0", "-c", "4", "--limit", "2",
        "--db", str(tmp_path / "s.db"), "--cache", "off", "--no-progress", "--json", str(tmp_path / "o.json")], "judge")
    assert spec == RunSpec(
        judge="openai:j", judge_options={"base_url": "http://127.0.0.1:1/v1", "api_key": "k", "max_retries": 0},
        concurrency=4, recipe_files=[recipe], limit=2, db=tmp_path / "s.db", cache="off", progress=False,
        json_out=tmp_path / "o.json")
    # what the judge is loaded with: its own options and --concurrency (as `capeval run` gives a judge)
    assert spec.judge_backend_options() == {"concurrency": 4, "base_url": "http://127.0.0.1:1/v1", "api_key": "k",
                                            "max_retries": 0}


def test_mtbench_and_alter_fill_the_runspec(tmp_path, monkeypatch):
    (tmp_path / "r.jinja").write_text(recipe_path("single").read_text(encoding="utf-8"))
    backend = ["--base-url", "http://127.0.0.1:1/v1", "-b", "3", "-c", "5", "-o", "api_key=k", "--db", str(tmp_path / "s.db"),
               "--cache", "refresh", "--no-progress", "--recipe-file", str(tmp_path / "r.jinja"), "--system", "S"]
    spec = _filled(monkeypatch, ["mtbench", "--model", "openai:m", "--judge", "openai:j", "--limit", "2",
                                 "--json", str(tmp_path / "o.json"), "--judge-option", "max_retries=0", *backend], "model")
    fields = {"model": "openai:m", "judge": "openai:j", "base_url": "http://127.0.0.1:1/v1", "batch_size": 3,
              "concurrency": 5, "model_options": {"api_key": "k"}, "db": tmp_path / "s.db", "cache": "refresh",
              "progress": False, "recipe_files": [tmp_path / "r.jinja"], "system": "S"}
    # mtbench gives the judge (and a baseline) --batch-size and --concurrency too; --judge-option the judge alone
    assert spec == RunSpec(limit=2, json_out=tmp_path / "o.json",
                           judge_options={"batch_size": 3, "concurrency": 5, "max_retries": 0}, **fields)
    spec = _filled(monkeypatch, ["alter", "--model", "openai:m", "--judge", "openai:j", "--capability", "Reasoning",
                                 "--data", str(tmp_path / "d"), "--seed", "3", *backend], "tasks")
    assert spec == RunSpec(tasks=["crosseval"], data={"crosseval": str(tmp_path / "d")}, seed=3, **fields)


@pytest.fixture
def loads(monkeypatch):
    """Every model load of the test: (spec, options), the model loaded as usual."""
    real = capeval.models.load_model
    seen: list[tuple[str, dict[str, Any]]] = []

    def load(spec: str, **options: Any) -> Any:
        seen.append((spec, options))
        return real(spec, **options)

    monkeypatch.setattr(capeval.models, "load_model", load)
    return seen


SAYINGS = '''
"""A task file for --include-path whose factory takes an option that changes every item's text."""
from capeval import Task, register_task
from capeval.tasks import Source
from capeval.types import Sample


@register_task("sayings_mem")
def sayings_mem(data=None, shout=False):
    return Task(
        name="sayings_mem", source=Source("local", data or "{data}"), output_type="generate",
        question_fn=lambda s, t: s.fields["text"].upper() if shout else s.fields["text"],
        row_to_sample_fn=lambda row, i, task: Sample(str(i), task.name, {{"text": row["text"]}}, ""),
    )
'''
SAYINGS_ROWS = [
    {"note": "a row with no text"},
    {"text": "a stitch in time saves nine and a penny saved is a penny earned"},
    {"text": "the early bird catches the worm while the second mouse gets the cheese"},
    {"text": "all that glitters is not gold and every cloud has a silver lining"},
]
API_KEY = "sk-mem-9f2"


@pytest.fixture
def sayings(tmp_path):
    data = tmp_path / "sayings.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in SAYINGS_ROWS))
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "sayings_mem.py").write_text(SAYINGS.format(data=data))
    yield folder
    TASKS.pop("sayings_mem", None)
    TASKS.origins.pop("sayings_mem", None)


def _model_calls(db: Path) -> int:
    with Store(db) as store:
        return int(store.query("SELECT COUNT(*) AS n FROM model_calls")[0]["n"])


def test_memorisation_options_reach_the_model_the_task_and_the_store(tmp_path, loads, sayings):
    db, out = tmp_path / "mem.db", tmp_path / "mem.json"
    with ScriptedChatServer(lambda model, messages: " the rest") as srv:
        args = ["contamination", "memorisation", "--model", "openai:parrot", "--task", "sayings_mem",
                "--include-path", str(sayings), "--task-option", "sayings_mem.shout=true", "--limit", "2",
                "--base-url", srv.base_url, "-b", "4", "-c", "2", "-o", f"api_key={API_KEY}", "--db", str(db),
                "--json", str(out), "--no-progress"]
        run = CliRunner().invoke(app(), args)
        assert run.exit_code == 0, run.output
        first = list(srv.requests)
        # --cache use (the default): the second check is answered from the store
        assert CliRunner().invoke(app(), args).exit_code == 0
        after_use = len(srv.requests)
        # --cache refresh sends every call again
        assert CliRunner().invoke(app(), [*args, "--cache", "refresh"]).exit_code == 0
        after_refresh = len(srv.requests)
        # --cache off: sent, and nothing written to its store
        off_db = tmp_path / "off.db"
        assert CliRunner().invoke(app(), [*args[:-5], "--db", str(off_db), "--cache", "off"]).exit_code == 0
        after_off = len(srv.requests)
        auth = set(srv.authorizations)
        # --strict: the row with no text is an error rather than skipped
        strict = CliRunner().invoke(app(), [*args, "--strict"])
    # --model, --base-url, --batch-size, --concurrency and -o reached the backend
    assert loads[0] == ("openai:parrot", {"batch_size": 4, "concurrency": 2, "base_url": srv.base_url, "api_key": API_KEY})
    assert {r["model"] for r in first} == {"parrot"} and auth == {f"Bearer {API_KEY}"}
    # --include-path and --task-option shout=true built the task; --limit 2 kept its first 2 good rows
    prompts = sorted(r["prompt"] for r in first)
    assert prompts == ["A STITCH IN TIME SAVES NINE AND", "THE EARLY BIRD CATCHES THE WORM"]
    assert (after_use, after_refresh, after_off) == (2, 4, 6)
    assert _model_calls(db) == 2 and _model_calls(off_db) == 0
    # --json: the per-item result of the 2 items
    assert [i["id"] for i in json.loads(out.read_text())["items"]] == ["1", "2"]
    assert isinstance(strict.exception, DatasetError) and "row 0" in str(strict.exception)


def test_ngram_builds_its_task_through_the_runspec(tmp_path, sayings):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("filler\n" + SAYINGS_ROWS[2]["text"].upper() + "\n")
    out = tmp_path / "n.json"
    run = CliRunner().invoke(app(), [
        "contamination", "ngram", "--task", "sayings_mem", "--include-path", str(sayings), "--task-option",
        "sayings_mem.shout=true", "--limit", "2", "--n", "5", "--corpus", str(corpus), "--json", str(out)])
    assert run.exit_code == 0, run.output
    items = {i["id"]: i for i in json.loads(out.read_text())["items"]}
    # 2 items (--limit), the second found in the corpus whole (words are lowercased on both sides)
    assert set(items) == {"1", "2"} and items["2"]["ratio"] == 1.0 and items["1"]["n_matched"] == 0


def judge_rule(model: str, messages: list[dict[str, str]]) -> str:
    """Rates a response by its length in words (1-10), so judge and human scores correlate."""
    text = messages[-1]["content"]
    m = re.search(r"<response>(.*?)</response>", text, re.DOTALL)
    words = len((m.group(1) if m else text).split())
    return f"Fine. Rating: [[{max(1, min(10, words))}]]"


@pytest.mark.parametrize("command", ["judge-check", "judge-robustness"])
def test_judge_command_options_reach_the_judge_and_the_store(tmp_path, loads, command):
    data = tmp_path / "rated.csv"
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "response", "human_score"])
        for k, response in enumerate(["yes", "yes it is", "yes it is true indeed", "no", "it is not so at all"]):
            w.writerow([f"question {k}?", response, len(response.split())])
    db = tmp_path / "judge.db"
    with ScriptedChatServer(judge_rule) as srv:
        args = [command, "--judge", "openai:rater", "--data", str(data), "--recipe", "single", "--limit", "3",
                "--judge-base-url", srv.base_url, "-c", "2", "-o", f"api_key={API_KEY}", "-o", "max_retries=0",
                "--db", str(db), "--json", str(tmp_path / "r.json"), "--no-progress"]
        if command == "judge-robustness":
            args += ["--attacks", "padding"]
        run = CliRunner().invoke(app(), args)
        assert run.exit_code == 0, run.output
        first = len(srv.requests)
        assert CliRunner().invoke(app(), args).exit_code == 0
        after_use = len(srv.requests)
        assert CliRunner().invoke(app(), [*args, "--cache", "refresh"]).exit_code == 0
        after_refresh = len(srv.requests)
        models, auth = {r["model"] for r in srv.requests}, set(srv.authorizations)
    # the judge: --judge, --judge-base-url, --concurrency and -o
    assert loads[0] == ("openai:rater", {"concurrency": 2, "base_url": srv.base_url, "api_key": API_KEY, "max_retries": 0})
    assert models == {"rater"} and auth == {f"Bearer {API_KEY}"}
    # --limit 3: three responses judged (robustness: clean and padded)
    per_run = 3 if command == "judge-check" else 6
    assert (first, after_use, after_refresh) == (per_run, per_run, 2 * per_run)
    with Store(db) as store:
        assert store.query("SELECT COUNT(*) AS n FROM model_calls")[0]["n"] == per_run
    report = json.loads((tmp_path / "r.json").read_text())
    if command == "judge-check":
        assert report["judge"] == f"openai:rater@{srv.base_url}" and len(report["rows"]) == 3
        assert report["overall"]["pearson"]["value"] == pytest.approx(1.0)
    else:
        assert report["n_base"] == 3 and [a["attack"] for a in report["attacks"]] == ["padding"]


@pytest.mark.parametrize("cache", ["use", "refresh", "off"])
def test_run_cache_mode_reaches_the_judge_calls_of_a_judged_task(tmp_path, cache):
    """`capeval run --cache` applies to the judge's calls too (ScoringContext.cache): refresh and off
    send them again, use answers them from the store."""
    fixtures = Path(__file__).resolve().parent / "fixtures" / "crosseval"
    with ScriptedChatServer(lambda m, msgs: "An answer.") as mut, ScriptedChatServer(
        lambda m, msgs: "Fine.\n\nEvaluation Score\nScore: 4/5") as judge:
        spec = RunSpec(model="openai:mut", tasks=["crosseval"], base_url=mut.base_url, judge=f"openai:judge@{judge.base_url}",
                       data={"crosseval": str(fixtures)}, limit=2, db=tmp_path / "c.db", progress=False)
        capeval.evaluate_spec(spec)
        first = len(judge.requests)
        result = capeval.evaluate_spec(replace(spec, cache=cache)).result
        again = len(judge.requests) - first
    assert first == 2 and again == (0 if cache == "use" else 2)
    assert result.metric("crosseval", "rating").value == pytest.approx(4.0)


def test_mtbench_model_options_and_cache_reach_the_model_and_the_judge(tmp_path, loads):
    args = ["mtbench", "--model", "openai:mut", "--categories", "writing", "--limit", "1", "-o", f"api_key={API_KEY}",
            "--db", str(tmp_path / "m.db"), "--json", str(tmp_path / "m.json"), "--no-progress"]
    with ScriptedChatServer(lambda m, msgs: "An answer.") as mut, ScriptedChatServer(
            lambda m, msgs: "Fine. Rating: [[6]]") as judge:
        full = [*args, "--base-url", mut.base_url, "--judge", f"openai:judge@{judge.base_url}"]
        counts = []
        for cache in ("use", "use", "refresh"):
            assert CliRunner().invoke(app(), [*full, "--cache", cache]).exit_code == 0
            counts.append((len(mut.requests), len(judge.requests)))
        auth = set(mut.authorizations)
    # -o reached the model's backend (not the judge's); use: answered from the store; refresh: sent again
    assert loads[0] == ("openai:mut", {"base_url": mut.base_url, "api_key": API_KEY})
    assert loads[1] == (f"openai:judge@{judge.base_url}", {})
    assert auth == {f"Bearer {API_KEY}"}
    assert counts == [(2, 2), (2, 2), (4, 4)]
    assert json.loads((tmp_path / "m.json").read_text())["config"]["cache"] == "refresh"


def test_mtbench_pairwise_gives_each_model_its_own_options(tmp_path, loads):
    with ScriptedChatServer(lambda m, msgs: "An answer.") as mut, ScriptedChatServer(
            lambda m, msgs: "Another answer.") as base, ScriptedChatServer(lambda m, msgs: "[[A]]") as judge:
        args = ["mtbench", "--model", "openai:mut", "--base-url", mut.base_url, "-o", "api_key=m-key",
                "--judge", f"openai:judge@{judge.base_url}", "--judge-option", "api_key=j-key", "-c", "3",
                "--mode", "pairwise", "--baseline", f"openai:base@{base.base_url}", "--baseline-option", "api_key=b-key",
                "--categories", "writing", "--limit", "1", "--db", str(tmp_path / "p.db"), "--no-progress"]
        assert CliRunner().invoke(app(), args).exit_code == 0
        auths = [set(s.authorizations) for s in (mut, base, judge)]
    assert sorted(loads) == sorted([
        ("openai:mut", {"concurrency": 3, "base_url": mut.base_url, "api_key": "m-key"}),
        (f"openai:judge@{judge.base_url}", {"concurrency": 3, "api_key": "j-key"}),
        (f"openai:base@{base.base_url}", {"concurrency": 3, "api_key": "b-key"}),
    ])
    assert auths == [{"Bearer m-key"}, {"Bearer b-key"}, {"Bearer j-key"}]
    refused = CliRunner().invoke(app(), ["mtbench", "--model", "openai:m", "--judge", "openai:j", "--baseline-option", "a=1"])
    assert "--baseline-option is given without --baseline" in str(refused.exception)


def test_alter_backend_options_recipe_file_and_cache_reach_its_models(tmp_path, loads):
    from alter_scripts import Judge, mut_rule, write_crosseval

    data = write_crosseval(tmp_path / "crosseval")
    recipe = tmp_path / "my_crosseval.jinja"
    recipe.write_text(recipe_path("crosseval").read_text(encoding="utf-8").replace(
        "{% block system %}\n", "{% block system %}\nEDITED RUBRIC 3e7a.\n", 1), encoding="utf-8")
    with ScriptedChatServer(mut_rule) as mut, ScriptedChatServer(Judge()) as judge:
        args = ["alter", "--model", "openai:mut", "--base-url", mut.base_url, "-b", "4", "-c", "2",
                "--judge", f"openai:judge@{judge.base_url}", "--capability", "Reasoning", "--data", str(data),
                "--per-round", "2", "--seed", "3", "--recipe-file", str(recipe), "--db", str(tmp_path / "a.db"),
                "--out", str(tmp_path / "study"), "--no-progress"]
        counts = []
        for cache in ("use", "use", "refresh"):
            run = CliRunner().invoke(app(), [*args, "--cache", cache])
            assert run.exit_code == 0, run.output
            counts.append((len(mut.requests), len(judge.requests)))
        rated = [r["messages"] for r in judge.requests
                 if "current principles" not in "\n".join(m["content"] for m in r["messages"])]
    assert loads[0] == ("openai:mut", {"batch_size": 4, "concurrency": 2, "base_url": mut.base_url})
    assert loads[1] == (f"openai:judge@{judge.base_url}", {"concurrency": 2})
    # --recipe-file: every rating request used the edited rubric
    assert rated and all("EDITED RUBRIC 3e7a." in m[0]["content"] for m in rated)
    # use: the second study is answered from the store; refresh: the model is asked everything again
    (mut1, judge1), (mut2, judge2), (mut3, judge3) = counts
    assert mut1 > 0 and (mut2, judge2) == (mut1, judge1)
    assert mut3 == 2 * mut1 and judge3 > judge2


def test_judge_options_without_a_judge_are_refused_before_a_model_loads(loads):
    with pytest.raises(CapevalError, match="--judge-option is given without --judge"):
        capeval.evaluate_spec(RunSpec(model="openai:m", tasks=["crosseval"], judge_options={"max_retries": 1}))
    assert loads == []


PEOPLE = [("Ada Lovelace", 1815), ("Isaac Newton", 1643), ("Marie Curie", 1867), ("Alan Turing", 1912),
          ("Julius Caesar", -100), ("Homer", -750), ("Voltaire", 1694), ("Emmy Noether", 1882),
          ("Leonhard Euler", 1707), ("Hypatia", 370), ("Confucius", -551), ("Grace Hopper", 1906)]


def test_probe_options_reach_the_local_model(tmp_path, loads, monkeypatch):
    from tiny_model import build_tiny_llama

    monkeypatch.setenv("CAPEVAL_CACHE_DIR", str(tmp_path / "cache"))
    folder = build_tiny_llama(tmp_path / "tiny")
    data = tmp_path / "people.csv"
    data.write_text("entity,year\n" + "".join(f"{e},{y}\n" for e, y in PEOPLE))
    out = tmp_path / "probe.json"
    run = CliRunner().invoke(app(), ["probe", "--data", str(data), "--target", "year", "--model", f"hf:{folder}",
                                     "-b", "5", "-o", "dtype=float32", "--seed", "9", "--json", str(out)])
    assert run.exit_code == 0, run.output
    # --model, --batch-size and --model-option reached the backend; --seed the split; --json the file
    assert loads == [(f"hf:{folder}", {"batch_size": 5, "dtype": "float32"})]
    report = json.loads(out.read_text())
    assert report["seed"] == 9 and len(report["layers"]) == 3  # embeddings + the tiny model's 2 layers
