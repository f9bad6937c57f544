"""YAML task specs: a task without code, and errors that name the file and line."""

import json
import textwrap

import pytest

from capeval.engine import plan_task
from capeval.errors import DatasetError, TaskSpecError
from capeval.prompting import PromptConfig
from capeval.tasks.yaml_spec import build_task, load_yaml_tasks, parse_spec

SPEC = """\
name: tiny-mc
description: a tiny multiple-choice task
source: {local: items.jsonl}
split: test
fewshot_split: test
shots: 1
output_type: multiple_choice
id: "q{{ qid }}"
question: "Question: {{ q }}"
choices: options
target: "{{ gold }}"
answer_prefix: "Answer:"
capabilities: [Reasoning]
metadata: {topic: "{{ topic }}"}
"""

ROWS = [
    {"qid": 1, "q": "2+2?", "options": ["3", "4"], "gold": "B", "topic": "math"},
    {"qid": 2, "q": "Sky colour?", "options": ["blue", "green"], "gold": 0, "topic": "world"},
    {"qid": 3, "q": "Capital of France?", "options": ["Rome", "Paris"], "gold": "Paris", "topic": "world"},
    {"qid": 4, "q": "missing options"},
    {"qid": 5, "q": "bad gold", "options": ["a", "b"], "gold": "Z", "topic": "x"},
]


def _write(tmp_path, spec=SPEC, rows=ROWS, name="tiny.yaml"):
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    p = tmp_path / name
    p.write_text(spec)
    return p


def test_yaml_task_maps_rows_and_counts_malformed(tmp_path):
    task = build_task(parse_spec(_write(tmp_path)))
    loaded = task.load()
    assert [s.id for s in loaded.samples] == ["q1", "q2", "q3"]
    assert [s.target for s in loaded.samples] == [1, 0, 1]  # letter, index and choice text
    assert loaded.samples[0].metadata == {"topic": "math"}
    assert task.capabilities == ("Reasoning",)
    assert len(loaded.malformed) == 2
    assert "row 3: KeyError" in loaded.malformed[0] and "row 4: ValueError" in loaded.malformed[1]
    with pytest.raises(DatasetError, match="row 3"):
        task.load(strict=True)


def test_yaml_task_renders_one_shot_prompt(tmp_path):
    task = build_task(parse_spec(_write(tmp_path)))
    plan = plan_task(task, PromptConfig(seed=3))
    prompt = plan.prompts[0]
    assert prompt.endswith("Question: 2+2?\nA. 3\nB. 4\nAnswer:")
    assert prompt.count("Answer:") == 2  # one exemplar, answered, then the item
    (req,) = plan.requests[0]
    assert req.kind == "loglikelihood" and req.continuations == (" A", " B")
    assert req.shared_prefix and prompt.startswith(req.shared_prefix)


def test_invalid_yaml_reports_file_and_line(tmp_path):
    p = _write(tmp_path, spec="name: x\nsource: {local: a.jsonl\nquestion: q\n")
    with pytest.raises(TaskSpecError) as e:
        parse_spec(p)
    assert str(p) in str(e.value) and ":3" in str(e.value)


def test_unknown_key_reports_line_and_suggestion(tmp_path):
    p = _write(tmp_path, spec=SPEC.replace("shots: 1", "shotz: 1"))
    with pytest.raises(TaskSpecError) as e:
        parse_spec(p)
    assert f"{p}:6: unknown key 'shotz'" in str(e.value)
    assert "did you mean 'shots'" in str(e.value)


def test_bad_template_and_missing_key(tmp_path):
    p = _write(tmp_path, spec=SPEC.replace('"Question: {{ q }}"', '"Question: {{ q "'))
    with pytest.raises(TaskSpecError, match="invalid Jinja2 template"):
        build_task(parse_spec(p))
    p2 = _write(tmp_path, spec=textwrap.dedent("name: x\nsource: {local: items.jsonl}\nquestion: q\n"), name="b.yaml")
    with pytest.raises(TaskSpecError, match="missing required key 'target'"):
        parse_spec(p2)


def test_include_folder_registers_tasks(tmp_path):
    _write(tmp_path)
    factories = load_yaml_tasks(tmp_path)
    assert list(factories) == ["tiny-mc"]
    local = tmp_path / "other.jsonl"
    local.write_text(json.dumps(ROWS[0]) + "\n")
    assert [s.id for s in factories["tiny-mc"](data=str(local)).load().samples] == ["q1"]
