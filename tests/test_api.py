"""The Python API: README's "Extending capeval" snippets run as written, docs/extending.md shows the
example plugin's files exactly, and capeval.evaluate takes names or Task objects."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import capeval

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.DOTALL)


def readme_snippets() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Extending capeval\n", 1)[1].split("\n## ", 1)[0]
    return [body for lang, body in FENCE.findall(section) if lang == "python"]


def test_readme_task_and_backend_snippets_are_short_and_run(tmp_path):
    task, backend, use = readme_snippets()
    assert len(task.strip().splitlines()) < 20 and len(backend.strip().splitlines()) < 20
    (tmp_path / "capitals.jsonl").write_text(
        "".join(json.dumps({"country": c, "capital": k}) + "\n" for c, k in (("France", "Paris"), ("Japan", "Tokyo"), ("Peru", "Lima")))
    )
    (tmp_path / "readme_example.py").write_text(task + "\n" + backend + "\n" + use)
    env = {**os.environ, "CAPEVAL_DB": str(tmp_path / "db.sqlite")}
    r = subprocess.run([sys.executable, "readme_example.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.strip()) == pytest.approx(2 / 3)  # the lookup knows France and Japan, not Peru
    # the same two blocks as an --include-path file
    (tmp_path / "tasks_file.py").write_text(task + "\n" + backend)
    out = tmp_path / "out.json"
    r = subprocess.run([sys.executable, "-m", "capeval", "run", "--include-path", "tasks_file.py", "-m", "lookup:demo",
                        "-t", "capitals", "--json", str(out), "--no-progress"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["metrics"][0]["value"] == pytest.approx(2 / 3)


def test_docs_extending_shows_the_example_plugin_files_exactly():
    text = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8")
    shown = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", text, re.DOTALL)
    paths = [p for p, _ in shown]
    for needed in ("pyproject.toml", "tasks.py", "backend.py", "terse.jinja", "cli.py", "scoring.py"):
        assert any(p.endswith(needed) for p in paths), needed
    for path, body in shown:
        assert body == (ROOT / path).read_text(encoding="utf-8"), f"docs/extending.md differs from {path}"


def test_evaluate_takes_task_objects_and_names(tmp_path):
    from capeval.tasks.yaml_spec import build_task, parse_spec

    (tmp_path / "items.jsonl").write_text("".join(json.dumps({"q": f"{i}+1", "a": str(i + 1)}) + "\n" for i in range(4)))
    spec = tmp_path / "plus.yaml"
    spec.write_text('name: plus-one\nsource: {local: items.jsonl}\nquestion: "{{ q }} ="\ntarget: "{{ a }}"\n')
    task = build_task(parse_spec(spec))

    class Adder:
        model_id = "adder"

        def generate(self, requests):
            return [capeval.Response(text=str(int(r.prompt.split("+")[0]) + 1)) for r in requests]

        def loglikelihood(self, requests):
            return [capeval.Response(error="no") for _ in requests]

    result = capeval.evaluate(task, Adder(), db=tmp_path / "db.sqlite")
    assert isinstance(result, capeval.RunResult)
    assert result.metric("plus-one", "exact_match").value == 1.0 and result.metric("plus-one", "exact_match").n == 4
    with pytest.raises(capeval.CapevalError, match="tasks first, then the model"):
        capeval.evaluate(Adder(), task)  # type: ignore[arg-type]
