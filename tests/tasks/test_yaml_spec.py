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


SAMPLER_SPEC = """\
name: fewshot-sums
source: {local: data}
split: test
fewshot_split: dev
shots: 2
output_type: generate
question: "{{ q }} ="
target: "{{ a }}"
"""


def _sums(tmp_path, sampler=None, scorer=None):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "test.jsonl").write_text("".join(json.dumps({"q": f"{i}+{i}", "a": str(2 * i)}) + "\n" for i in range(8)))
    (data / "dev.jsonl").write_text("".join(json.dumps({"q": f"d{i}", "a": f"D{i}"}) + "\n" for i in range(6)))
    spec = SAMPLER_SPEC + (f"sampler: {sampler}\n" if sampler else "") + (f"scorer: {scorer}\n" if scorer else "")
    return build_task(parse_spec(_write(tmp_path, spec=spec, rows=[], name="sums.yaml")))


def _prefixes(task):
    plan = plan_task(task, PromptConfig(seed=7))
    return [reqs[0].shared_prefix for reqs in plan.requests]


def test_sampler_fixed_shares_one_prefix_per_item_varies_first_n_takes_the_first(tmp_path):
    fixed = _prefixes(_sums(tmp_path, "fixed"))
    assert len(fixed) == 8 and len(set(fixed)) == 1  # one draw: every prompt starts the same (KV prefix reuse)
    per_item = _prefixes(_sums(tmp_path, "per_item"))
    assert len(set(per_item)) > 1
    assert per_item == _prefixes(_sums(tmp_path, "per_item"))  # seeded: the same on a re-run
    first = _prefixes(_sums(tmp_path, "first_n"))
    assert set(first) == {"d0 = D0\n\nd1 = D1\n\n"}
    # without `sampler` a spec keeps its old draw: the same seeded order, but dev row ids "0".."5"
    # collide with test ids, so each of the two items whose id is drawn gets another pair
    default = _prefixes(_sums(tmp_path))
    assert len(set(default)) == 3
    assert max(set(default), key=default.count) == fixed[0] and default.count(fixed[0]) == 6


def test_sampler_unknown_is_refused_with_the_known_ones(tmp_path):
    with pytest.raises(TaskSpecError, match="unknown sampler 'random'") as e:
        _sums(tmp_path, "random")
    assert e.value.hint == "known: first_n, fixed, per_item"


def test_scorer_module_function_beside_the_spec(tmp_path):
    (tmp_path / "my_scorers.py").write_text(
        "from capeval.types import Score\n"
        "def ends_with_target(sample, responses, task):\n"
        "    hit = (responses[0].text or '').strip().endswith(str(sample.target))\n"
        "    return Score(sample.id, sample.task, {'ends': float(hit)})\n"
    )
    task = _sums(tmp_path, "fixed", scorer="my_scorers:ends_with_target")
    from capeval.types import Response

    sample = task.load().samples[3]
    assert task.score(sample, [Response(text="so it is 6")]).values == {"ends": 1.0}
    assert task.score(sample, [Response(text="7")]).values == {"ends": 0.0}
    with pytest.raises(TaskSpecError, match="cannot load scorer 'my_scorers:nope'"):
        _sums(tmp_path, scorer="my_scorers:nope")
    with pytest.raises(TaskSpecError, match="unknown scorer 'no_such'"):
        _sums(tmp_path, scorer="no_such")


# ---- output_type: loglikelihood (lm-eval's loglikelihood tasks, e.g. LAMBADA) --------------------
LAMBADA_SPEC = """\
name: tiny-lambada
source: {local: items.jsonl}
output_type: loglikelihood
id: "d{{ n }}"
question: "{{ text.rsplit(' ', 1)[0] }}"
target: "{{ ' ' + text.rsplit(' ', 1)[1] }}"
"""
DOCS = [
    {"n": 1, "text": "the cat sat on the mat"},
    {"n": 2, "text": "she poured the tea into a cup"},
    {"n": 3, "text": "oneword"},  # no last word to predict after a context: a malformed row
]


class _LoglikelihoodModel:
    """Answers each continuation with a fixed log-probability; greedy only for ' mat'."""

    model_id = "fake:ll"
    batch_size = 8

    def __init__(self) -> None:
        self.seen: list = []

    def loglikelihood(self, requests):
        from capeval.types import Response

        self.seen += requests
        out = []
        for r in requests:
            (cont,) = r.continuations
            out.append(Response(logprobs=(-2.0 * len(cont),), is_greedy=(cont == " mat",), n_tokens=(1,)))
        return out

    def generate(self, requests):
        raise AssertionError("a loglikelihood task generates nothing")


def test_loglikelihood_task_scores_the_target_as_rendered_after_the_context(tmp_path):
    import math

    from capeval.engine import evaluate_tasks
    from capeval.store import Store

    task = build_task(parse_spec(_write(tmp_path, spec=LAMBADA_SPEC, rows=DOCS, name="lambada.yaml")))
    loaded = task.load()
    assert [s.target for s in loaded.samples] == [" mat", " cup"]  # leading space kept, not stripped
    assert len(loaded.malformed) == 1 and "row 2" in loaded.malformed[0]
    plan = plan_task(task, PromptConfig())
    assert plan.prompts == ["the cat sat on the", "she poured the tea into a"]
    assert [rs[0].continuations for rs in plan.requests] == [(" mat",), (" cup",)]

    model = _LoglikelihoodModel()
    with Store(tmp_path / "runs.db") as store:
        result = evaluate_tasks(model, [task], store=store, progress=False)
    (bpb,) = [m for m in result.metrics if m.metric == "bits_per_byte"]
    # -log p / (ln 2 * bytes) with log p = -2 per character of the continuation: 2 / ln 2 per byte
    assert bpb.value == pytest.approx(2 / math.log(2), rel=1e-9) and bpb.n == 2
    assert sorted(r.prompt for r in model.seen) == sorted(plan.prompts)  # the engine orders by length

    greedy = build_task({**parse_spec(tmp_path / "lambada.yaml"), "scorer": "greedy_target"})
    with Store(tmp_path / "runs2.db") as store:
        result = evaluate_tasks(_LoglikelihoodModel(), [greedy], store=store, progress=False)
    (acc,) = [m for m in result.metrics if m.metric == "acc"]
    assert acc.value == pytest.approx(0.5) and acc.n == 2 and acc.unparsed_rate == 0


def test_greedy_target_without_the_backends_answer_is_unparsed_not_scored():
    from capeval.scoring import greedy_target_scorer
    from capeval.types import Response, Sample

    sample = Sample("d1", "t", {"question": "the cat sat on the"}, " mat")

    class _Task:
        def continuations(self, s):
            return (s.target,)

    score = greedy_target_scorer()
    assert score(sample, [Response(logprobs=(-1.0,), is_greedy=(True,))], _Task()).values == {"acc": 1.0}
    missing = score(sample, [Response(logprobs=(-1.0,))], _Task())
    assert not missing.parsed and missing.values == {"acc": 0.0} and "did not report" in missing.metadata["error"]


def test_loglikelihood_spec_refuses_choices_and_unknown_output_types(tmp_path):
    p = _write(tmp_path, spec=LAMBADA_SPEC + "choices: [a, b]\n", rows=DOCS, name="l.yaml")
    with pytest.raises(TaskSpecError, match=r"l\.yaml:7: a loglikelihood task .* takes no 'choices'"):
        build_task(parse_spec(p))
    p = _write(tmp_path, spec=LAMBADA_SPEC.replace("output_type: loglikelihood", "output_type: rolling"), rows=DOCS)
    with pytest.raises(TaskSpecError, match="multiple_choice, generate or loglikelihood"):
        build_task(parse_spec(p))


def test_mc_target_equal_to_a_choice_text_is_that_choice_not_an_index_or_letter(tmp_path):
    rows = [
        {"qid": 1, "q": "1 + 1?", "options": ["1", "2", "3", "4"], "gold": "2"},  # text "2", not index 2
        {"qid": 2, "q": "Spider legs?", "options": ["6", "8", "10", "12"], "gold": "8"},  # not out of range
        {"qid": 3, "q": "The vowel?", "options": ["b", "a", "c"], "gold": "a"},  # text "a", not letter A
        {"qid": 4, "q": "Pick C", "options": ["x", "y", "z"], "gold": "C"},  # no such text: a letter
        {"qid": 5, "q": "Pick 1", "options": ["x", "y", "z"], "gold": 1},  # no such text: an index
    ]
    spec = SPEC.replace('metadata: {topic: "{{ topic }}"}\n', "")
    loaded = build_task(parse_spec(_write(tmp_path, spec, rows))).load()
    assert loaded.malformed == []
    assert [s.target for s in loaded.samples] == [1, 1, 1, 2, 1]


@pytest.mark.parametrize(
    ("line", "message", "hint"),
    [
        ("choice_format: letter\n", "unknown choice_format 'letter'", "known: letters, texts (did you mean 'letters'?)"),
        ("mc_mode: loglikelihod\n", "unknown mc_mode 'loglikelihod'", "known: loglikelihood, generate (did you mean"),
    ],
)
def test_mc_mode_and_choice_format_typos_are_refused_with_the_line_and_the_known_values(tmp_path, line, message, hint):
    path = _write(tmp_path, SPEC + line)
    with pytest.raises(TaskSpecError, match=message) as e:
        build_task(parse_spec(path))
    assert f"tiny.yaml:{SPEC.count(chr(10)) + 1}" in str(e.value) and e.value.hint.startswith(hint)


def test_mc_mode_generate_and_choice_format_texts_are_accepted(tmp_path):
    task = build_task(parse_spec(_write(tmp_path, SPEC + "mc_mode: generate\nchoice_format: texts\n")))
    assert (task.mc_mode, task.choice_format) == ("generate", "texts")


def test_more_choices_than_letters_is_a_malformed_row_not_a_crash(tmp_path):
    rows = [
        {"qid": 1, "q": "Pick z2", "options": [f"z{i}" for i in range(27)], "gold": "z2"},
        {"qid": 2, "q": "2+2?", "options": ["3", "4"], "gold": "4"},
    ]
    spec = SPEC.replace('metadata: {topic: "{{ topic }}"}\n', "")
    task = build_task(parse_spec(_write(tmp_path, spec, rows)))
    plan = plan_task(task, PromptConfig())
    assert [s.id for s in plan.samples] == ["q2"]
    assert plan.malformed == ["tiny-mc test row 0: ValueError: 27 choices, more than the 26 letters A..Z"]
    texts = build_task(parse_spec(_write(tmp_path, spec + "choice_format: texts\n", rows)))
    assert len(texts.load().samples) == 2  # each choice's text is scored: no letters needed


def test_group_by_reports_each_value_and_the_macro_mean_as_mtbench_category_does(tmp_path):
    from capeval.tasks import get_task
    from capeval.types import Response

    task = build_task(parse_spec(_write(tmp_path, SPEC + "group_by: topic\n")))
    samples = task.load().samples  # q1 math, q2 world, q3 world
    right = [task.score(s, [Response(logprobs=(-1.0, -2.0) if s.target == 0 else (-2.0, -1.0))]) for s in samples]
    right[2] = task.score(samples[2], [Response(logprobs=(-1.0, -2.0))])  # q3 wrong
    by = {(m.task, m.metric): m.value for m in task.group_metrics(right)}
    assert by[("tiny-mc/math", "acc")] == 1.0 and by[("tiny-mc/world", "acc")] == 0.5
    assert by[("tiny-mc", "acc_macro")] == 0.75
    assert build_task(parse_spec(_write(tmp_path))).group_metrics(right) == []
    mt = get_task("mtbench-category")
    mt_scores = [mt.score(s, [Response(logprobs=tuple(-1.0 for _ in range(8)))]) for s in mt.load().samples]
    tasks = {m.task for m in mt.group_metrics(mt_scores)}
    assert len(tasks) == 9 and "mtbench-category/writing" in tasks
