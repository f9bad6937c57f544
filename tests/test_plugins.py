"""Plugins: entry points add tasks, backends, scorers, recipes and commands; names never clash silently."""

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

import capeval
from capeval.errors import UnknownNameError
from capeval.plugins import BUILTIN_ORIGIN, PluginConflictError
from capeval.tasks.registry import TASKS, add_include_path, get_task, task_names, task_origin

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "capeval-plugin-example"


def test_second_register_task_of_a_builtin_name_raises_naming_both_origins():
    task_names()
    builtin = TASKS["mmlu"]
    with pytest.raises(PluginConflictError) as e:
        capeval.register_task("mmlu")(lambda data=None: None)
    assert "task 'mmlu' is registered twice: by capeval (built-in) and by module tests.test_plugins" in str(e.value) or (
        "by capeval (built-in) and by module test_plugins" in str(e.value)
    )
    assert TASKS["mmlu"] is builtin and task_origin("mmlu") == BUILTIN_ORIGIN


def test_register_backend_of_a_builtin_name_raises():
    with pytest.raises(PluginConflictError, match="model backend 'hf' is registered twice: by capeval \\(built-in\\)"):
        capeval.register_backend("hf")(lambda spec: None)


def test_unknown_backend_hint_names_a_real_command():
    with pytest.raises(UnknownNameError) as e:
        capeval.load_model("nosuchbackend:x")
    assert e.value.hint == "run `capeval models` to list them"


PY_TASK = '''
"""A task file for --include-path: a task and the backend that answers it."""
from capeval import Task, register_backend, register_task
from capeval.tasks import Source
from capeval.types import Response, Sample


@register_backend("shout")
def shout(spec, **options):
    class Shout:
        model_id = "shout:" + spec
        def generate(self, requests):
            return [Response(text=r.prompt.split("Word:")[-1].strip().upper()) for r in requests]
        def loglikelihood(self, requests):
            return [Response(error="no") for _ in requests]
    return Shout()


@register_task("upper_words")
def upper_words(data=None):
    return Task(
        name="upper_words", source=Source("local", data or "{data}"), output_type="generate",
        metrics=("exact_match",), description="upper-case a word",
        row_to_sample_fn=lambda row, i, task: Sample(str(i), task.name, {{"question": "Word: " + row["w"]}}, row["w"].upper()),
    )
'''


WIDE = {**os.environ, "COLUMNS": "400"}  # rich wraps long error lines at the terminal width


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "capeval", *args], capture_output=True, text=True, env=WIDE, timeout=600, check=False)


def test_include_path_loads_python_task_files_and_a_clash_names_the_file(tmp_path):
    data = tmp_path / "words.jsonl"
    data.write_text("".join(json.dumps({"w": w}) + "\n" for w in ("cat", "dog", "emu")))
    tasks_dir = tmp_path / "mytasks"
    tasks_dir.mkdir()
    (tasks_dir / "upper.py").write_text(PY_TASK.format(data=data))
    r = _cli("tasks", "--include-path", str(tasks_dir), "--json")
    assert r.returncode == 0, r.stderr
    infos = {t["name"]: t for t in json.loads(r.stdout)["tasks"]}
    assert infos["upper_words"]["description"] == "upper-case a word"
    out = tmp_path / "out.json"
    r = _cli("run", "--include-path", str(tasks_dir), "-m", "shout:x", "-t", "upper_words", "--db", str(tmp_path / "db.sqlite"),
             "--json", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    metrics = {m["metric"]: m["value"] for m in json.loads(out.read_text())["metrics"]}
    assert metrics["exact_match"] == 1.0
    # a YAML spec that takes a built-in's name is refused, naming both
    (tasks_dir / "gsm8k.yaml").write_text("name: gsm8k\nsource: {local: x.jsonl}\nquestion: q\ntarget: t\n")
    r = _cli("tasks", "--include-path", str(tasks_dir))
    assert r.returncode == 2
    assert f"task 'gsm8k' is registered twice: by capeval (built-in) and by file {(tasks_dir / 'gsm8k.yaml').resolve()}" in r.stderr


def test_include_path_python_file_in_process(tmp_path):
    data = tmp_path / "words.jsonl"
    data.write_text(json.dumps({"w": "yak"}) + "\n")
    f = tmp_path / "upper_one.py"
    f.write_text(PY_TASK.format(data=data).replace('"upper_words"', '"upper_one"').replace('"shout"', '"shout_one"'))
    add_include_path(f)
    assert "upper_one" in task_names()
    assert task_origin("upper_one") == f"file {f.resolve()}"
    assert [s.target for s in get_task("upper_one").load().samples] == ["YAK"]


JUDGED_TASK = '''
"""A judged task file for --include-path: a judge model grades the answers, a breakdown follows the metrics."""
from capeval import BreakdownRow, Task, register_backend, register_task
from capeval.tasks import Source
from capeval.types import Request, Response, Sample, Score


@register_backend("upper")
def upper(spec, **options):
    class Upper:
        model_id = "upper:" + spec
        def generate(self, requests):
            return [Response(text=r.prompt.split(":")[-1].strip().upper()) for r in requests]
        def loglikelihood(self, requests):
            return [Response(error="no") for _ in requests]
    return Upper()


class JudgedWords(Task):
    def score_all(self, samples, responses, ctx):
        asks = [Request(kind="generate", prompt="Shout: " + r[0].text, task=self.name, sample_id=s.id)
                for s, r in zip(samples, responses)]
        verdicts = ctx.judge.generate(asks)
        return [Score(s.id, s.task, {{"judged": float(v.text == s.target)}}, v.text, True, s.target)
                for s, v in zip(samples, verdicts)]


def count_rows(store, run_id, console=None):
    n = sum(1 for _ in store.iter_samples(run_id, "judged_words"))
    print(f"BREAKDOWN {{run_id}}: {{n}} samples")
    return [BreakdownRow("overall", "all", "judged", 1.0, 1.0, 1.0, n)]


@register_task("judged_words")
def judged_words(data=None):
    return JudgedWords(
        name="judged_words", source=Source("local", data or "{data}"), output_type="generate",
        metrics=("judged",), judged_by="upper-case check", breakdown=count_rows,
        row_to_sample_fn=lambda row, i, task: Sample(str(i), task.name, {{"question": "Word: " + row["w"]}}, row["w"].upper()),
    )
'''


def test_a_users_judged_task_needs_judge_and_its_breakdown_is_printed(tmp_path):
    """Task.judged_by makes a run of the task need --judge (and gives ScoringContext.judge the judge
    model); Task.breakdown is what `capeval run` prints after the metrics."""
    data = tmp_path / "words.jsonl"
    data.write_text("".join(json.dumps({"w": w}) + "\n" for w in ("cat", "dog", "emu")))
    tasks_dir = tmp_path / "judged"
    tasks_dir.mkdir()
    (tasks_dir / "judged_words.py").write_text(JUDGED_TASK.format(data=data))
    r = _cli("tasks", "--include-path", str(tasks_dir), "--json")
    assert r.returncode == 0, r.stderr
    info = {t["name"]: t for t in json.loads(r.stdout)["tasks"]}["judged_words"]
    assert info["judge"] == "upper-case check" and "count_rows" in info["breakdown"]
    base = ["run", "--include-path", str(tasks_dir), "-m", "upper:x", "-t", "judged_words", "--db", str(tmp_path / "db.sqlite"),
            "--no-progress"]
    r = _cli(*base)
    assert r.returncode == 2
    assert "judged_words is scored by a judge model" in r.stderr and "pass --judge MODEL" in r.stderr
    out = tmp_path / "out.json"
    r = _cli(*base, "--judge", "upper:j", "--json", str(out))
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert {m["metric"]: m["value"] for m in result["metrics"]}["judged"] == 1.0
    assert f"BREAKDOWN {result['run_id']}: 3 samples" in r.stdout


def _plugin_venv(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A new virtual environment that sees this interpreter's packages (torch, typer...) through a
    .pth file, with the example plugin pip-installed into it and this tree's capeval first."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_capeval_parent_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # built from a copy: a non-isolated build writes build/ and *.egg-info next to its sources
    example = shutil.copytree(EXAMPLE, tmp_path / "example", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", str(example)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    env = {**WIDE, "PYTHONPATH": str(ROOT / "src"), "VIRTUAL_ENV": str(env_dir)}
    return py, env


def test_installed_plugin_package_adds_task_backend_scorer_recipe_and_command(tmp_path):
    py, env = _plugin_venv(tmp_path)

    def cli(*args):
        r = subprocess.run([str(py), "-m", "capeval", *args], capture_output=True, text=True, env=env, timeout=600,
                           cwd=tmp_path, check=False)
        assert r.returncode == 0, r.stderr
        return r.stdout

    where = subprocess.run([str(py), "-c", "import capeval, capeval_plugin_example as p; print(capeval.__file__); print(p.__file__)"],
                           capture_output=True, text=True, env=env, check=True).stdout.split()
    assert where[0] == str(ROOT / "src" / "capeval" / "__init__.py")
    assert where[1].startswith(str(tmp_path / "venv"))  # installed, not read from the source tree

    tasks = {t["name"]: t for t in json.loads(cli("tasks", "--json"))["tasks"]}
    assert tasks["example_arith"]["description"] == "example plugin: five sums (capeval-plugin-example)"
    models = cli("models")
    assert "calc:SPEC" in models and "capeval-plugin-example" in models
    recipes = cli("judge-recipes")
    assert "terse" in recipes and "terse.jinja" in recipes
    assert "example-sum" in cli("--help")
    assert cli("example-sum", "20", "22").strip() == "42"

    # the plugin's task, answered by its backend, scored by its scorer; a wrong calculator scores 0
    for offset, expected in ((0, 1.0), (1, 0.0)):
        out = tmp_path / f"out{offset}.json"
        cli("run", "-m", "calc:demo", "-o", f"offset={offset}", "-t", "example_arith", "--db", str(tmp_path / "db.sqlite"),
            "--json", str(out), "--no-progress")
        result = json.loads(out.read_text())
        assert [(m["metric"], m["value"], m["n"]) for m in result["metrics"]] == [("contains", expected, 5)]

    # a second package declaring the same backend name is refused, naming both packages
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=70.1"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "capeval-calc-clone"
        version = "0.2.0"
        [project.entry-points."capeval.backends"]
        calc = "calc_clone:load"
        [tool.setuptools]
        py-modules = ["calc_clone"]
        """))
    (clone / "calc_clone.py").write_text("def load(spec):\n    raise RuntimeError('never loaded')\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                    "--no-build-isolation", "--no-index", str(clone)], check=True, capture_output=True, timeout=600)
    r = subprocess.run([str(py), "-m", "capeval", "run", "-m", "calc:demo", "-t", "example_arith", "--db", str(tmp_path / "db.sqlite")],
                       capture_output=True, text=True, env=env, timeout=600, check=False)
    assert r.returncode == 2
    assert "model backend 'calc' is registered twice: by package capeval-plugin-example 0.1.0" in r.stderr
    assert "and by package capeval-calc-clone 0.2.0" in r.stderr


def test_a_plugin_that_cannot_load_is_one_error_line_naming_the_package(tmp_path):
    # an installed distribution is a dist-info folder on the path; this one names a missing module
    dist = tmp_path / "broken_plugin-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text("[capeval.commands]\nbroken = no_such_module_4f2c:register\n")
    env = {**WIDE, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(tmp_path)])}
    r = subprocess.run([sys.executable, "-m", "capeval", "--help"], capture_output=True, text=True, env=env,
                       timeout=600, check=False)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith(
        "error: package broken-plugin 0.3 (entry point capeval.commands: broken = no_such_module_4f2c:register): "
        "cannot load no_such_module_4f2c:register: ModuleNotFoundError"
    )
