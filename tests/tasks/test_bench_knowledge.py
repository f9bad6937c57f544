"""MMLU, CMMLU, C-Eval, GPQA and HellaSwag on small fixtures in each hub dataset's schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capeval.engine import plan_task
from capeval.errors import DatasetError
from capeval.prompting import PromptConfig
from capeval.tasks import get_task
from capeval.types import Response

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"


def ll_response(n: int, best: int) -> Response:
    """A log-likelihood answer that prefers choice `best`."""
    return Response(logprobs=tuple(-1.0 if i == best else -5.0 for i in range(n)))


# ---- MMLU ------------------------------------------------------------------------------------------


def test_mmlu_rows_map_to_samples_and_malformed_rows_are_counted():
    task = get_task("mmlu", data=str(FIXTURES / "mmlu"))
    loaded = task.load()
    assert [s.id for s in loaded.samples] == [
        "anatomy/0",
        "anatomy/2",
        "elementary_mathematics/0",
        "elementary_mathematics/1",
    ]
    first = loaded.samples[0]
    assert first.choices == ("Liver", "Lung", "Kidney", "Heart") and first.target == 3
    assert first.metadata["subject"] == "anatomy"
    assert loaded.malformed == ["mmlu test anatomy row 1: KeyError: 'choices'"]


@pytest.mark.parametrize("name", ["mmlu", "math", "bbh"])
def test_limit_counts_per_subject(name):
    """--limit N takes the first N of every subject (as lm-eval limits each subtask), not the first N
    overall, which would all come from one subject."""
    from collections import Counter

    task = get_task(name, data=str(FIXTURES / name))
    full = Counter(s.metadata["subject"] for s in task.load().samples)
    assert len(full) >= 2 and max(full.values()) >= 2
    limited = task.load(limit=1).samples
    assert Counter(s.metadata["subject"] for s in limited) == {subject: 1 for subject in full}
    # and the first of each subject, in the data's order
    firsts = {}
    for s in task.load().samples:
        firsts.setdefault(s.metadata["subject"], s.id)
    assert [s.id for s in limited] == list(firsts.values())


def test_mmlu_prompt_zero_and_five_shot_exactly():
    task = get_task("mmlu", data=str(FIXTURES / "mmlu"))
    zero = plan_task(task, PromptConfig(shots=0))
    assert zero.prompts[0] == (
        "The following are multiple choice questions (with answers) about anatomy.\n\n"
        "Which organ pumps blood?\nA. Liver\nB. Lung\nC. Kidney\nD. Heart\nAnswer:"
    )
    assert zero.requests[0][0].continuations == (" A", " B", " C", " D")
    five = plan_task(task, PromptConfig())
    # the first 5 dev items of the item's own subject, in dataset order (the fixture's dev has 5)
    assert five.prompts[2] == (
        "The following are multiple choice questions (with answers) about elementary mathematics.\n\n"
        "What is 2 + 3?\nA. 4\nB. 5\nC. 6\nD. 7\nAnswer: B\n\n"
        "What is 10 / 2?\nA. 2\nB. 20\nC. 5\nD. 8\nAnswer: C\n\n"
        "Which number is prime?\nA. 4\nB. 6\nC. 9\nD. 7\nAnswer: D\n\n"
        "What is 3 squared?\nA. 9\nB. 6\nC. 12\nD. 3\nAnswer: A\n\n"
        "What is 15 - 7?\nA. 7\nB. 9\nC. 8\nD. 6\nAnswer: C\n\n"
        "What is 6 times 7?\nA. 42\nB. 36\nC. 48\nD. 49\nAnswer:"
    )
    # anatomy has only 2 dev items: exemplars never cross subjects
    assert five.prompts[0].count("Answer:") == 3 and "What is 2 + 3?" not in five.prompts[0]


@pytest.mark.parametrize("name", ["mmlu", "hhh"])
def test_under_chat_the_scored_answer_opens_the_assistant_turn_as_the_exemplars_do(name):
    """After chat messages an answer is scored as "B", the way the exemplars' assistant turns read,
    not " B" (lm-eval's target_delimiter "" under a chat template); plain prompts keep " B"."""
    task = get_task(name, data=str(FIXTURES / name))
    chat = plan_task(task, PromptConfig(chat=True))
    plain = plan_task(task, PromptConfig())
    for chat_reqs, plain_reqs in zip(chat.requests, plain.requests):
        for c, p in zip(chat_reqs, plain_reqs):
            assert c.continuations == tuple(x.lstrip(" ") for x in p.continuations) != p.continuations
    answers = [m.content for m in chat.requests[2][0].prompt if m.role == "assistant"]
    if name == "mmlu":
        assert answers and all(a in "ABCD" for a in answers)


def test_mmlu_scoring_and_per_subject_macro_breakdown():
    task = get_task("mmlu", data=str(FIXTURES / "mmlu"))
    samples = task.load().samples
    right = [task.score(s, [ll_response(4, int(s.target))]) for s in samples]
    assert [sc.values["acc"] for sc in right] == [1.0, 1.0, 1.0, 1.0]
    wrong = task.score(samples[0], [ll_response(4, 0)])
    assert wrong.values["acc"] == 0.0 and wrong.extracted == "A" and wrong.target == "D"
    mixed = [right[0], right[1], right[2], task.score(samples[3], [ll_response(4, 0)])]
    groups = {(m.task, m.metric): m for m in task.group_metrics(mixed)}
    assert groups[("mmlu/anatomy", "acc")].value == 1.0 and groups[("mmlu/anatomy", "acc")].n == 2
    assert groups[("mmlu/elementary_mathematics", "acc")].value == 0.5
    assert groups[("mmlu", "acc_macro")].value == pytest.approx(0.75)



def _mmlu_row(question: str, subject: str, answer: int = 0) -> str:
    row = {"question": question, "subject": subject, "choices": ["a", "b", "c", "d"], "answer": answer}
    return json.dumps(row) + "\n"


def test_a_subject_folder_without_dev_takes_only_its_own_subjects_rows_of_the_root_dev(tmp_path):
    """anatomy/ has no dev file: the root's dev.jsonl holds every subject's rows, and only the anatomy
    ones may be its exemplars (tagged with the folder's subject, 2 + 3 became an anatomy exemplar)."""
    for subject in ("anatomy", "astronomy"):
        (tmp_path / subject).mkdir()
        (tmp_path / subject / "test.jsonl").write_text(_mmlu_row(f"{subject} question?", subject))
    (tmp_path / "astronomy" / "dev.jsonl").write_text(_mmlu_row("Red planet?", "astronomy"))
    (tmp_path / "dev.jsonl").write_text(
        _mmlu_row("What is 2 + 3?", "elementary_mathematics")
        + _mmlu_row("Which bone protects the brain?", "anatomy")
        + _mmlu_row("Closest star?", "astronomy")
    )
    for name in ("mmlu", "mmlu_anatomy"):
        plan = plan_task(get_task(name, data=str(tmp_path)), PromptConfig())
        anatomy = plan.prompts[0]
        assert plan.samples[0].metadata["subject"] == "anatomy"
        assert "Which bone protects the brain?" in anatomy and "2 + 3" not in anatomy and "star" not in anatomy
    astronomy = plan_task(get_task("mmlu", data=str(tmp_path)), PromptConfig()).prompts[1]
    assert "Red planet?" in astronomy and "Closest star?" not in astronomy  # its own dev file comes first

    # rows without a subject field: the root's dev/<subject>.csv (CMMLU's layout) serve their subject;
    # one dev file of every subject cannot, and says so instead of lending all its rows to each
    cmmlu = _cmmlu_repo_layout(tmp_path / "cmmlu")
    for subject in ("agronomy", "arts"):
        (cmmlu / subject).mkdir()
        (cmmlu / "test" / f"{subject}.csv").rename(cmmlu / subject / "test.csv")
    prompts = plan_task(get_task("cmmlu", data=str(cmmlu)), PromptConfig()).prompts
    assert "水稻" in prompts[0] and "蒙娜丽莎" not in prompts[0]
    assert "蒙娜丽莎" in prompts[1] and "水稻" not in prompts[1]
    for f in (cmmlu / "dev").iterdir():
        f.unlink()
    (cmmlu / "dev").rmdir()
    _write_csv(cmmlu / "dev.csv", ",Question,A,B,C,D,Answer", ["0,水稻属于哪一类作物？,油料作物,粮食作物,纤维作物,糖料作物,B"])
    with pytest.raises(DatasetError, match=r"agronomy has no 'dev' file, and its subject's rows cannot be told apart"):
        plan_task(get_task("cmmlu", data=str(cmmlu)), PromptConfig())
    # a single-subject task's one dev file is its own, as before
    assert "水稻" in plan_task(get_task("cmmlu_agronomy", data=str(cmmlu)), PromptConfig()).prompts[0]


def test_mmlu_single_subject_task_and_generative_mode():
    one = get_task("mmlu_anatomy", data=str(FIXTURES / "mmlu"))
    assert [s.id for s in one.load().samples] == ["anatomy/0", "anatomy/2"]
    assert one.group_metrics([]) == []
    gen = get_task("mmlu_gen", data=str(FIXTURES / "mmlu"))
    plan = plan_task(gen, PromptConfig(shots=0))
    req = plan.requests[0][0]
    assert req.kind == "generate" and req.params.max_tokens == 8
    sample = plan.samples[0]
    assert gen.score(sample, [Response(text=" D. Heart")]).values["acc"] == 1.0
    assert gen.score(sample, [Response(text=" B")]).values["acc"] == 0.0


def test_cot_on_exemplars_without_reasoning_says_it_changed_nothing():
    gen = get_task("mmlu_gen", data=str(FIXTURES / "mmlu"))
    cot = plan_task(gen, PromptConfig(shots=2, cot=True))
    assert cot.prompts == plan_task(gen, PromptConfig(shots=2)).prompts
    assert any("mmlu_gen: --cot changes nothing: its exemplars carry no reasoning" in w for w in cot.warnings)
    zero = plan_task(gen, PromptConfig(shots=0, cot=True))  # 0-shot: the step-by-step trigger
    assert zero.prompts[0].endswith("Answer: Let's think step by step.") and not zero.warnings


def test_mmlu_from_one_local_file_never_uses_the_item_as_its_own_exemplar():
    # a single file serves every split: the dev pool is the evaluated rows themselves
    task = get_task("mmlu_elementary_mathematics", data=str(FIXTURES / "mmlu" / "test.jsonl"))
    plan = plan_task(task, PromptConfig())
    assert [s.id for s in plan.samples] == ["elementary_mathematics/0", "elementary_mathematics/1"]
    assert plan.prompts[0].count("What is 6 times 7?") == 1
    assert plan.prompts[0].count("Answer:") == 2  # the other item only


def test_exemplars_from_the_evaluated_file_itself_are_a_run_warning_only_with_shots():
    one_file = get_task("mmlu_elementary_mathematics", data=str(FIXTURES / "mmlu" / "test.jsonl"))
    (warning,) = plan_task(one_file, PromptConfig()).warnings
    assert warning.startswith("mmlu_elementary_mathematics: exemplars drawn from the evaluated file itself: ")
    assert "serves the test items and the dev exemplars" in warning
    assert plan_task(one_file, PromptConfig(shots=0)).warnings == []
    # a folder with its own dev split, and CRASS's fixed exemplars, draw nothing from the evaluated file
    assert plan_task(get_task("mmlu", data=str(FIXTURES / "mmlu")), PromptConfig()).warnings == []
    crass = get_task("crass", data=str(FIXTURES / "crass" / "CRASS_FTM_main_data_set.csv"))
    assert plan_task(crass, PromptConfig()).warnings == []


# ---- CMMLU / C-Eval -----------------------------------------------------------------------------


def test_cmmlu_chinese_prompt_first_n_dev_exemplars_and_malformed_answer():
    task = get_task("cmmlu", data=str(FIXTURES / "cmmlu"))
    loaded = task.load()
    assert [s.id for s in loaded.samples] == ["agronomy/0", "agronomy/2", "arts/0"]
    assert loaded.malformed == ["cmmlu test agronomy row 1: ValueError: answer 'E' is not one of A..D"]
    plan = plan_task(task, PromptConfig())
    assert plan.prompts[2] == (
        "以下是关于艺术学的单项选择题，请直接给出正确答案的选项。\n\n"
        "《蒙娜丽莎》的作者是谁？\nA. 梵高\nB. 达·芬奇\nC. 毕加索\nD. 莫奈\n答案： B\n\n"
        "京剧起源于哪个城市？\nA. 上海\nB. 北京\nC. 广州\nD. 成都\n答案："
    )
    s = plan.samples[2]
    assert task.score(s, [ll_response(4, 1)]).values["acc"] == 1.0
    assert task.score(s, [ll_response(4, 2)]).values["acc"] == 0.0


def test_ceval_val_split_zero_shot_prompt_and_no_cot_under_log_likelihood():
    task = get_task("ceval", data=str(FIXTURES / "ceval"))
    loaded = task.load()
    assert task.split == "val" and [s.target for s in loaded.samples] == [3, 0]
    assert "empty choice" in loaded.malformed[0]
    zero = plan_task(task, PromptConfig(shots=0))
    assert zero.prompts[0] == (
        "以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。\n\n"
        "TCP 属于哪一层协议？\nA. 物理层\nB. 数据链路层\nC. 网络层\nD. 传输层\n答案："
    )
    # the letter is scored right after 答案：, so exemplars ending "... The answer is C." (or a
    # step-by-step trigger) would put text the scored answer never follows: --cot is not applied
    cot = plan_task(task, PromptConfig(shots=1, cot=True))
    assert cot.prompts == plan_task(task, PromptConfig(shots=1)).prompts
    assert "答案： C\n\n" in cot.prompts[0]
    assert any("ceval: --cot not applied" in w for w in cot.warnings)



def _write_csv(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


def _cmmlu_repo_layout(root: Path) -> Path:
    """CMMLU's GitHub layout: <split>/<subject>.csv, rows without a subject column."""
    header = ",Question,A,B,C,D,Answer"
    _write_csv(root / "dev" / "agronomy.csv", header, ["0,水稻属于哪一类作物？,油料作物,粮食作物,纤维作物,糖料作物,B"])
    _write_csv(root / "dev" / "arts.csv", header, ["0,《蒙娜丽莎》的作者是谁？,梵高,达·芬奇,毕加索,莫奈,B"])
    _write_csv(root / "test" / "agronomy.csv", header, ["0,玉米起源于哪个洲？,亚洲,欧洲,美洲,非洲,C"])
    _write_csv(root / "test" / "arts.csv", header, ["0,京剧起源于哪个城市？,上海,北京,广州,成都,B"])
    return root


def test_cmmlu_and_ceval_on_their_repositories_layout_take_each_files_subject_from_its_name(tmp_path):
    """`test/agronomy.csv` rows carry no subject column: the file's name is their subject, so
    `cmmlu_agronomy` neither evaluates the arts question nor shows the arts dev item as an exemplar."""
    data = str(_cmmlu_repo_layout(tmp_path / "cmmlu"))
    single = get_task("cmmlu_agronomy", data=data)
    assert [(s.id, s.fields["question"]) for s in single.load().samples] == [("agronomy/0", "玉米起源于哪个洲？")]
    assert plan_task(single, PromptConfig()).prompts[0] == (
        "以下是关于农学的单项选择题，请直接给出正确答案的选项。\n\n"
        "水稻属于哪一类作物？\nA. 油料作物\nB. 粮食作物\nC. 纤维作物\nD. 糖料作物\n答案： B\n\n"
        "玉米起源于哪个洲？\nA. 亚洲\nB. 欧洲\nC. 美洲\nD. 非洲\n答案："
    )
    full = plan_task(get_task("cmmlu", data=data), PromptConfig())
    assert [(s.id, s.metadata["subject"]) for s in full.samples] == [("agronomy/0", "agronomy"), ("arts/0", "arts")]
    assert "水稻" in full.prompts[0] and "蒙娜丽莎" not in full.prompts[0]
    assert "蒙娜丽莎" in full.prompts[1] and "水稻" not in full.prompts[1]

    # C-Eval's: val/<subject>_val.csv, dev/<subject>_dev.csv
    ceval = tmp_path / "ceval"
    header = "id,question,A,B,C,D,answer"
    _write_csv(ceval / "dev" / "computer_network_dev.csv", header + ",explanation", ["0,HTTP 默认端口？,21,25,80,110,C,是 80"])
    _write_csv(ceval / "dev" / "operating_system_dev.csv", header + ",explanation", ["0,进程是什么？,程序,执行中的程序,文件,线程,B,"])
    _write_csv(ceval / "val" / "computer_network_val.csv", header, ["0,TCP 属于哪一层？,物理层,数据链路层,网络层,传输层,D"])
    _write_csv(ceval / "val" / "operating_system_val.csv", header, ["0,死锁的必要条件有几个？,2,3,4,5,C"])
    plan = plan_task(get_task("ceval_computer_network", data=str(ceval)), PromptConfig())
    assert [s.fields["question"] for s in plan.samples] == ["TCP 属于哪一层？"]
    assert "HTTP 默认端口？" in plan.prompts[0] and "进程" not in plan.prompts[0]
    both = get_task("ceval", data=str(ceval)).load().samples
    assert [s.metadata["subject"] for s in both] == ["computer_network", "operating_system"]


def test_mmlu_original_release_csvs_have_no_header_and_lose_no_row(tmp_path):
    """data/test/<subject>_test.csv of the original MMLU release: question, A-D, answer letter,
    no header. The first row is an item (it was read as the header: one item lost per subject,
    and every other row malformed)."""
    root = tmp_path / "data"
    (root / "test").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "test" / "anatomy_test.csv").write_text(
        'Which organ filters blood?,Liver,Lung,Kidney,Heart,C\n"Bones, in an adult?",106,206,306,406,B\n', encoding="utf-8"
    )
    (root / "test" / "astronomy_test.csv").write_text("Closest star?,Sirius,Sun,Vega,Rigel,B\n", encoding="utf-8")
    (root / "dev" / "anatomy_dev.csv").write_text("Pumps blood?,Heart,Lung,Skin,Bone,A\n", encoding="utf-8")
    (root / "dev" / "astronomy_dev.csv").write_text("Red planet?,Venus,Mars,Moon,Sun,B\n", encoding="utf-8")
    plan = plan_task(get_task("mmlu_anatomy", data=str(root)), PromptConfig(shots=1))
    assert [(s.fields["question"], s.choices, s.target) for s in plan.samples] == [
        ("Which organ filters blood?", ("Liver", "Lung", "Kidney", "Heart"), 2),
        ("Bones, in an adult?", ("106", "206", "306", "406"), 1),
    ]
    assert not plan.malformed
    assert "Pumps blood?\nA. Heart\nB. Lung\nC. Skin\nD. Bone\nAnswer: A\n\n" in plan.prompts[0]
    assert "Red planet" not in plan.prompts[0]
    full = get_task("mmlu", data=str(root)).load()
    assert [s.id for s in full.samples] == ["anatomy/0", "anatomy/1", "astronomy/0"]
    # a file with a header is read by its header, as before
    headed = tmp_path / "headed"
    headed.mkdir()
    (headed / "test.csv").write_text("question,A,B,C,D,answer\nQ?,w,x,y,z,D\n", encoding="utf-8")
    assert [s.target for s in get_task("mmlu_anatomy", data=str(headed)).load().samples] == [3]


def test_a_split_folder_file_named_after_no_subject_is_an_error_naming_it(tmp_path):
    data = _cmmlu_repo_layout(tmp_path)
    _write_csv(data / "test" / "notes.csv", ",Question,A,B,C,D,Answer", ["0,问题？,甲,乙,丙,丁,A"])
    for name in ("cmmlu", "cmmlu_agronomy"):
        with pytest.raises(DatasetError, match=r"cannot tell the subject of .*notes\.csv"):
            get_task(name, data=str(data)).load()
    # one file that names no subject is still the single-subject task's own data, as before
    one = tmp_path / "one"
    _write_csv(one / "test.csv", ",Question,A,B,C,D,Answer", ["0,问题？,甲,乙,丙,丁,A"])
    assert [s.metadata["subject"] for s in get_task("cmmlu_agronomy", data=str(one)).load().samples] == ["agronomy"]


# ---- GPQA ----------------------------------------------------------------------------------------------


def test_gpqa_choices_shuffled_by_fixed_seed_per_item():
    task = get_task("gpqa_diamond", data=str(FIXTURES / "gpqa"))
    loaded = task.load()
    assert [s.id for s in loaded.samples] == ["rec1", "rec2", "rec3"]
    assert loaded.malformed == ["gpqa_diamond train row 3: KeyError: 'Incorrect Answer 3'"]
    again = get_task("gpqa_diamond", data=str(FIXTURES / "gpqa")).load().samples
    assert [s.choices for s in again] == [s.choices for s in loaded.samples]
    # the raw rows list the correct answer first; after the shuffle it is not always first
    assert {s.target for s in loaded.samples} != {0}
    first = loaded.samples[0]
    assert first.choices is not None and first.choices[first.target] == "Weber"
    assert sorted(first.choices) == ["Gauss", "Henry", "Tesla", "Weber"]
    plan = plan_task(task, PromptConfig())
    assert plan.prompts[0] == (
        "Answer the following graduate-level science question by choosing one option.\n\n"
        "What is the SI unit of magnetic flux?\n"
        + "\n".join(f"{'ABCD'[i]}. {c}" for i, c in enumerate(first.choices))
        + "\nAnswer:"
    )
    assert task.score(first, [ll_response(4, first.target)]).values["acc"] == 1.0
    assert task.score(first, [ll_response(4, (first.target + 1) % 4)]).values["acc"] == 0.0


def test_gpqa_reports_each_domain_and_the_macro_mean(tmp_path):
    import json

    lines = (FIXTURES / "gpqa" / "train.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines[:3]]
    rows[2]["High-level domain"] = "Chemistry"
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = get_task("gpqa_diamond", data=str(tmp_path))
    samples = task.load().samples
    wrong_first = [ll_response(4, (s.target + 1) % 4 if i == 0 else s.target) for i, s in enumerate(samples)]
    scores = [task.score(s, [r]) for s, r in zip(samples, wrong_first)]
    by = {(m.task, m.metric): m.value for m in task.group_metrics(scores)}
    assert by[("gpqa_diamond/Physics", "acc")] == 0.5 and by[("gpqa_diamond/Chemistry", "acc")] == 1.0
    assert by[("gpqa_diamond", "acc_macro")] == pytest.approx(0.75)  # the micro mean is 2/3


def test_gpqa_hub_error_says_gated(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    task = get_task("gpqa_main")
    with pytest.raises(DatasetError) as e:
        task.load()
    assert "gated" in str(e.value) and "huggingface.co/datasets/Idavidrein/gpqa" in (e.value.hint or "")


# ---- HellaSwag -------------------------------------------------------------------------------------


def test_hellaswag_preprocessing_prompt_and_acc_norm():
    task = get_task("hellaswag", data=str(FIXTURES / "hellaswag"))
    loaded = task.load()
    assert len(loaded.samples) == 2 and "no label" in loaded.malformed[0]
    wiki = loaded.samples[1]
    # " [title]" becomes ". ", other [tags] are dropped, ctx_b is capitalised
    assert (
        wiki.fields["question"]
        == "Making a sandwich: How to make a sandwich. Take two slices of bread. Spread"
    )
    assert wiki.choices == (
        "butter on one slice.",
        "the bread on the floor.",
        "water over the toaster.",
        "the slices into the sky.",
    )
    plan = plan_task(task, PromptConfig())
    assert plan.prompts[0] == "Roof shingle removal: A man is sitting on a roof. He"
    assert plan.requests[0][0].continuations[3] == " starts pulling up roofing on a roof."
    s = loaded.samples[0]
    # raw log-likelihood favours the short ending 1; per character the right ending 3 wins
    resp = Response(logprobs=(-30.0, -20.0, -30.0, -24.0))
    sc = task.score(s, [resp])
    assert sc.values == {"acc": 0.0, "acc_norm": 1.0}
    # acc_norm divides by the ending's own length, not with the space before it (lm-eval's
    # completion_len over doc_to_choice): with the space, ending 2 would win
    lengths = [len(c) for c in s.choices]
    lls = tuple(rate * n for rate, n in zip((-1.2, -1.005, -1.2, -1.0), lengths))
    with_space = max(range(4), key=lambda i: lls[i] / (lengths[i] + 1))
    lm_eval = max(range(4), key=lambda i: lls[i] / lengths[i])
    assert (with_space, lm_eval) == (1, 3) and int(s.target) == 3
    assert task.score(s, [Response(logprobs=lls)]).values["acc_norm"] == 1.0


def test_choices_given_as_text_or_a_mapping_are_malformed_rows_not_split_into_characters(tmp_path):
    import json

    rows = [
        {"question": "Which bone protects the brain?", "subject": "anatomy", "choices": ["Femur", "Skull"], "answer": 1},
        {"question": "A CSV cell?", "subject": "anatomy", "choices": "['Femur', 'Skull']", "answer": 1},
        {"question": "ARC's layout?", "subject": "anatomy", "choices": {"text": ["a", "b"], "label": ["A", "B"]},
         "answer": 0},
    ]
    f = tmp_path / "test.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = get_task("mmlu_anatomy", data=str(f)).load()
    assert [s.choices for s in loaded.samples] == [("Femur", "Skull")]
    assert "choices must be a list, got str \"['Femur', 'Skull']\"" in loaded.malformed[0]
    assert "choices must be a list, got a mapping with keys ['label', 'text']" in loaded.malformed[1]
    hs = {"ind": 1, "activity_label": "Cooking", "ctx_a": "A man cooks.", "ctx_b": "he", "endings": "abcd", "label": "0"}
    good = {**hs, "ind": 2, "endings": ["a", "b", "c", "d"]}
    f.write_text(json.dumps(hs) + "\n" + json.dumps(good) + "\n")
    hella = get_task("hellaswag", data=str(f)).load()
    assert len(hella.samples) == 1 and "choices must be a list, got str 'abcd'" in hella.malformed[0]
