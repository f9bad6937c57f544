"""GSM8K, MATH, BBH and DROP on small fixtures in each hub dataset's schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from capeval.engine import plan_task
from capeval.errors import DatasetError
from capeval.prompting import PromptConfig
from capeval.tasks import get_task
from capeval.types import Response

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"


def graded(task, sample, text: str) -> dict[str, float]:
    return dict(task.score(sample, [Response(text=text)]).values)


# ---- GSM8K ---------------------------------------------------------------------------------------------


def test_gsm8k_rows_rationale_and_malformed_rows():
    task = get_task("gsm8k", data=str(FIXTURES / "gsm8k"))
    loaded = task.load()
    assert [s.target for s in loaded.samples] == ["18", "3"]
    assert loaded.samples[0].fields["rationale"] == "She has 16 - 3 - 4 = 9 eggs left. She makes 9 * 2 = $18."
    assert loaded.malformed[0] == "gsm8k test row 2: ValueError: answer has no '#### N' line"
    assert "invalid JSON" in loaded.malformed[1]
    train = task.load(split="train").samples
    assert train[8].target == "950"  # "1,200 - 250 = 950 ... #### 950": commas gone from the number


def test_a_split_whose_every_row_is_malformed_is_an_error_naming_the_reason_and_the_columns(tmp_path):
    import json

    rows = [{"problem": "1+1?", "answer": "2 #### 2"}, {"problem": "2+2?", "answer": "4 #### 4"}]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError, match=r"gsm8k test: all 2 rows are malformed \(first: .*KeyError: 'question'\)") as e:
        plan_task(get_task("gsm8k", data=str(tmp_path)), PromptConfig(shots=0))
    assert "the rows have the columns answer, problem" in str(e.value.hint)
    # a multi-subject task: every subject's rows malformed
    (tmp_path / "test.jsonl").write_text('{"input": "True and False is"}\n')
    with pytest.raises(DatasetError, match="bbh_boolean_expressions test: all 1 rows are malformed"):
        get_task("bbh_boolean_expressions", data=str(tmp_path / "test.jsonl")).load()
    # one good row is enough: the others are counted, as before
    rows.append({"question": "3+3?", "answer": "6 #### 6"})
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = get_task("gsm8k", data=str(tmp_path)).load()
    assert len(loaded.samples) == 1 and len(loaded.malformed) == 2


def test_gsm8k_prompt_zero_and_k_shot_exemplars_fixed_by_seed():
    task = get_task("gsm8k", data=str(FIXTURES / "gsm8k"))
    zero = plan_task(task, PromptConfig(shots=0))
    assert zero.prompts[0] == (
        "Question: Janet has 16 eggs, eats 3 and bakes with 4. She sells the rest at $2 each. How much does she make?\n"
        "Answer:"
    )
    two = plan_task(task, PromptConfig(shots=2, seed=1234))
    assert two.prompts[0] == (
        "Question: A farm has 1,200 sheep and sells 250. How many remain?\n"
        "Answer: 1,200 - 250 = 950 sheep remain. The answer is 950.\n\n"
        "Question: A shirt costs $20 and is 25% off. What is the sale price?\n"
        "Answer: The discount is 20 * 0.25 = $5. The sale price is 20 - 5 = $15. The answer is 15.\n\n"
        "Question: Janet has 16 eggs, eats 3 and bakes with 4. She sells the rest at $2 each. How much does she make?\n"
        "Answer:"
    )
    # same seed: same exemplars for every item and every run; another seed: another draw
    assert plan_task(task, PromptConfig(shots=2, seed=1234)).prompts == two.prompts
    assert two.requests[0][0].shared_prefix == two.requests[1][0].shared_prefix
    assert plan_task(task, PromptConfig(shots=2, seed=7)).prompts[0] != two.prompts[0]
    eight = plan_task(task, PromptConfig())
    assert eight.prompts[0].count("The answer is") == 8
    assert eight.requests[0][0].params.stop[0] == "Question:"


def test_gsm8k_scorer_right_wrong_and_run_on():
    task = get_task("gsm8k", data=str(FIXTURES / "gsm8k"))
    s = task.load().samples[0]
    assert graded(task, s, " She has 9 eggs left and makes 9 * 2 = $18. The answer is 18.") == {
        "exact_match": 1.0
    }
    assert graded(task, s, " She makes 2 * 10 = 20 dollars. The answer is 20.") == {"exact_match": 0.0}
    run_on = " 9 * 2 = 18. The answer is 18.\n\nQuestion: Tom has 5 pens. How many?\nAnswer: The answer is 5."
    assert graded(task, s, run_on) == {"exact_match": 1.0}


# ---- MATH ----------------------------------------------------------------------------------------------


def test_math_subjects_exemplars_from_same_subject_train_and_boxed_targets():
    task = get_task("math", data=str(FIXTURES / "math"))
    loaded = task.load()
    assert [(s.id, s.target) for s in loaded.samples] == [
        ("algebra/0", "7"),
        ("algebra/1", "\\frac{3}{4}"),
        ("prealgebra/0", "30"),
    ]
    assert loaded.malformed == ["math test algebra row 2: ValueError: solution has no \\boxed{} answer"]
    one = plan_task(task, PromptConfig(shots=1))
    assert one.prompts[2] == (
        "Solve each problem. Put the final answer in \\boxed{}.\n\n"
        "Problem:\nWhat is $12 \\div 4$?\nSolution: $12 \\div 4 = \\boxed{3}$.\n\n"
        "Problem:\nWhat is $15\\%$ of $200$?\nSolution:"
    )
    four = plan_task(task, PromptConfig())
    assert four.prompts[0].count("Problem:") == 5 and "12 \\div 4" not in four.prompts[0]


def test_math_scorer_equivalence():
    task = get_task("math", data=str(FIXTURES / "math"))
    add, frac, _ = task.load().samples
    assert graded(task, add, " Adding 5 gives $x = \\boxed{7}$.") == {"equiv": 1.0}
    assert graded(task, add, " So $x = \\boxed{3}$.") == {"equiv": 0.0}
    assert graded(task, frac, " The sum is $\\boxed{\\frac34}$.") == {"equiv": 1.0}


# ---- BBH ------------------------------------------------------------------------------------------------


def test_bbh_first_three_items_are_held_out_exemplars():
    task = get_task("bbh", data=str(FIXTURES / "bbh"))
    plan = plan_task(task, PromptConfig())
    assert [s.id for s in plan.samples] == [
        "boolean_expressions/3",
        "boolean_expressions/4",
        "date_understanding/3",
    ]
    assert plan.prompts[0] == (
        "not ( True ) and ( True ) is\nAnswer: False\n\n"
        "True and not not ( not False ) is\nAnswer: True\n\n"
        "not True or False or ( False ) is\nAnswer: False\n\n"
        "False or not ( True ) and False is\nAnswer:"
    )
    zero = plan_task(task, PromptConfig(shots=0))
    assert zero.prompts[2].startswith("Today is 2/28/2019.") and zero.prompts[2].endswith(
        "(B) 03/01/2019\nAnswer:"
    )


def test_bbh_scorer_and_macro_over_subtasks():
    task = get_task("bbh", data=str(FIXTURES / "bbh"))
    b3, b4, d3 = task.load().samples
    assert graded(task, b3, " False") == {"exact_match": 1.0}
    assert graded(task, b3, " True") == {"exact_match": 0.0}
    assert graded(task, d3, " (B)") == {"exact_match": 1.0}
    assert graded(task, d3, " (A)") == {"exact_match": 0.0}
    scores = [task.score(b3, [Response(text=" False")]), task.score(b4, [Response(text=" False")]),
              task.score(d3, [Response(text=" (B)")])]  # fmt: skip
    by = {(m.task, m.metric): m.value for m in task.group_metrics(scores)}
    assert by[("bbh/boolean_expressions", "exact_match")] == 0.5
    assert by[("bbh", "exact_match_macro")] == 0.75  # mean of 0.5 and 1.0, not 2/3


# ---- DROP ------------------------------------------------------------------------------------------------


def test_drop_single_answer_items_and_no_exemplar_from_the_same_passage():
    task = get_task("drop", data=str(FIXTURES / "drop"))
    loaded = task.load()
    # q4 has a two-span answer (left out, as INSTRUCTEVAL); q6 has no answer (malformed)
    assert [s.id for s in loaded.samples] == ["q1", "q2", "q3", "q5"]
    assert loaded.samples[1].target == [["Lions"]]
    assert loaded.malformed == ["drop validation row 5: ValueError: no answer spans"]
    plan = plan_task(task, PromptConfig(shots=1))
    assert plan.prompts[0] == (
        "In 1990 the city had 25,000 residents. By 2000 the population had grown to 31,000, and the largest "
        "employers were the mill and the port. How many more residents were there in 2000 than in 1990?\n"
        "Answer: 6,000\n\n"
        "The Bears scored 14 points in the first quarter. The Lions answered with a field goal. In the second half "
        "the Bears added 7 more points. How many points did the Bears score in total?\nAnswer:"
    )
    three = plan_task(task, PromptConfig())
    for sample, prompt in zip(three.samples, three.prompts):
        passage = sample.fields["question"].split(" How ")[0].split(" Which ")[0]
        assert prompt.count(passage) == 1  # the item's own passage only once: no exemplar from it


def test_drop_scorer_em_f1():
    task = get_task("drop", data=str(FIXTURES / "drop"))
    q1, q2, *_ = task.load().samples
    assert graded(task, q1, " 21") == {"em": 1.0, "f1": 1.0}
    assert graded(task, q1, " 14") == {"em": 0.0, "f1": 0.0}
    assert graded(task, q2, " the Lions") == {"em": 1.0, "f1": 1.0}  # articles are normalised away


def test_math_from_one_competition_math_file_groups_rows_by_type():
    # hendrycks/competition_math's layout: one file per split, the subject in each row's `type`
    task = get_task("math", data=str(FIXTURES / "math_competition"))
    plan = plan_task(task, PromptConfig(shots=1))
    assert [s.id for s in plan.samples] == [
        "algebra/0",
        "counting_and_probability/0",
    ]  # "Astrology" is no subject
    assert "How many ways can 3 people stand in a line?" in plan.prompts[1]
    assert "3^2 + 4^2" not in plan.prompts[1]  # the exemplar comes from the item's own subject
    one = get_task("math_counting_and_probability", data=str(FIXTURES / "math_competition"))
    assert [s.target for s in one.load().samples] == ["6"]
