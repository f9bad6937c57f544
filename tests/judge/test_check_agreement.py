"""judge-check: CrossEval reference rotation, correlations with bootstrap CIs, the reference ablation,
MT-Bench vote agreement and the CLI, against a scripted judge over real HTTP."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from capeval.analysis.correlation import (
    bootstrap_correlation,
    correlation,
    correlations_by_group,
    pairwise_agreement,
)
from capeval.cli import main
from capeval.crosseval.human_ratings import crosseval_rated, rotation
from capeval.judge import get_recipe
from capeval.judge.check import (
    check_ratings,
    check_votes,
    csv_rated,
    detect_format,
    mtbench_category,
    mtbench_votes,
    read_rows,
)
from capeval.models import load_model
from scripted_chat import ScriptedChatServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "judge"
CROSSEVAL = FIXTURES / "crosseval_rated.jsonl"
MTBENCH = FIXTURES / "mtbench_human_judgments.jsonl"
USER_CSV = FIXTURES / "user_ratings.csv"


def _response(user: str) -> str:
    return user.split("<response>\n", 1)[1].split("\n</response>", 1)[0]


def make_rule(truth: dict[str, float], broken: set[str] = frozenset()):
    """A judge whose rating depends on how many references it sees, so the ablation has a known answer.

    2 references: the rounded human mean; 1: the rounded mean for all but response_1 slots (3);
    0: always 3 except 4 for long responses. Responses in `broken` never get a parseable verdict."""

    def rule(model: str, messages: list[dict[str, str]]) -> str:
        user = messages[-1]["content"]
        text = _response(user)
        if text in broken:
            return "A thoughtful answer overall."
        k = user.count("<reference_response ")
        human = truth[text]
        if k >= 2:
            score = round(human)
        elif k == 1:
            score = 3 if text in first_slot else round(human)
        else:
            score = 4 if len(text) > 150 else 3
        return f"1. Key requirements...\n5. Evaluation Score\nScore: {score}/5"

    first_slot = {r.item.response for r in crosseval_rated(read_rows(CROSSEVAL)) if r.slot == 1}
    return rule


def test_rotation_matches_crosseval_meta_evaluation():
    assert [rotation(i) for i in (1, 2, 3)] == [[2, 3], [3, 1], [1, 2]]


def test_crosseval_rated_shows_only_the_other_references():
    rows = read_rows(CROSSEVAL)
    assert detect_format(rows) == "crosseval"
    rated = crosseval_rated(rows)
    assert len(rated) == 18
    r = next(x for x in rated if x.item.id == "en-email-1/response_2")
    assert r.slot == 2 and r.group == "English" and r.human_ratings == (3.0, 3.0) and r.human_mean == 3.0
    assert [ref.response for ref in r.item.references] == [rows[0]["response_3"], rows[0]["response_1"]]
    for x in rated:  # the judge never sees the human ratings of the response it rates
        assert all(ref.response != x.item.response for ref in x.item.references)


def test_correlation_functions_match_scipy_and_handle_degenerate_input():
    x = [1, 2, 3, 4, 5, 2, 4]
    y = [1.5, 2, 2.5, 4.5, 5, 3, 3.5]
    assert correlation(x, y, "pearson")[0] == pytest.approx(stats.pearsonr(x, y).statistic)
    assert correlation(x, y, "spearman")[0] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert correlation(x, y, "kendall")[0] == pytest.approx(stats.kendalltau(x, y).statistic)
    c = bootstrap_correlation(x, y, "pearson", n_resamples=500, seed=3)
    assert c.ci_low <= c.value <= c.ci_high and c.n == 7
    assert bootstrap_correlation(x, y, "pearson", n_resamples=500, seed=3) == c  # seeded
    assert math.isnan(correlation([3, 3, 3, 3], [1, 2, 3, 4])[0])  # a constant judge has no correlation
    assert math.isnan(correlation([1, 2], [1, 2])[0])
    groups = correlations_by_group(x, y, ["a", "a", "a", "b", "b", "b", "b"], methods=("pearson",), n_resamples=50)
    assert list(groups) == ["a", "b"]
    assert groups["b"][0].value == pytest.approx(stats.pearsonr(x[3:], y[3:]).statistic)


def test_pairwise_agreement_with_and_without_ties():
    judge = ["A", "B", "tie", "A", "B", "tie"]
    human = ["A", "A", "tie", "B", "B", "A"]
    assert pairwise_agreement(judge, human).value == pytest.approx(3 / 6)
    without = pairwise_agreement(judge, human, with_ties=False)
    assert without.n == 4 and without.value == pytest.approx(2 / 4)


def test_check_ratings_correlations_ablation_and_failures(store):
    rated = crosseval_rated(read_rows(CROSSEVAL))
    truth = {r.item.response: r.human_mean for r in rated}
    broken = {rated[4].item.response}
    with ScriptedChatServer(make_rule(truth, broken)) as srv:
        judge = load_model("openai:judge", base_url=srv.base_url)
        report = check_ratings(judge, get_recipe("crosseval"), rated, store=store, n_resamples=200)
        n_calls = len(srv.requests)
    # references shown by default: the 2 others; the broken one fails after a retry and is left out
    assert report.n_references == 2
    assert report.summary.failed == 1 and report.summary.parsed == 17
    ok = [r for r in rated if r.item.response not in broken]
    expected = stats.pearsonr([round(r.human_mean) for r in ok], [r.human_mean for r in ok]).statistic
    pearson = report.pearson()
    assert pearson.n == 17 and pearson.value == pytest.approx(expected)
    assert pearson.ci_low <= pearson.value <= pearson.ci_high
    assert {c.method for c in report.overall} == {"pearson", "spearman", "kendall"}
    assert set(report.by_group) == {r.group for r in ok} and sorted(report.by_slot) == [1, 2, 3]
    # ablation: 0, 1, 2 references measured, 3 reported as impossible on reference responses
    assert [a.n_references for a in report.ablation] == [0, 1, 2, 3]
    zero, one, two, three = report.ablation
    assert two.correlations == report.overall
    one_expected = stats.pearsonr(
        [3 if r.slot == 1 else round(r.human_mean) for r in ok], [r.human_mean for r in ok]
    ).statistic
    assert one.correlations[0].value == pytest.approx(one_expected)
    zero_expected = stats.pearsonr(
        [4 if len(r.item.response) > 150 else 3 for r in ok], [r.human_mean for r in ok]
    ).statistic
    assert zero.correlations[0].value == pytest.approx(zero_expected)
    assert zero.correlations[0].value < one.correlations[0].value < two.correlations[0].value
    assert three.n_rated == 0 and "only 2 others" in three.note
    # every setting: 18 first calls + 1 retry; the main setting was not paid twice
    assert n_calls == 3 * 19
    row = next(r for r in report.rows if r["id"] == rated[4].item.id)
    assert row["judge_score"] is None and row["parsed"] is False and "Score: X/5" in row["error"]
    assert report.length_bias_human is not None and report.length_bias_judge.n == 17


def test_mtbench_votes_and_agreement():
    rows = read_rows(MTBENCH)
    assert detect_format(rows) == "mtbench"
    votes = mtbench_votes(rows)
    assert [v.winner for v in votes] == ["B", "B", "B", "A", "tie", "tie"]
    assert [v.group for v in votes] == ["writing", "writing", "writing", "math", "math", "coding"]
    assert mtbench_category(160) == "humanities" and mtbench_category(7) == "other"
    turn2 = votes[2].item
    assert turn2.prompt.startswith("Rewrite your previous response")
    assert turn2.history[1].content == "Hawaii is nice. I went there."
    assert turn2.history_b[1].content.startswith("Aloha!")

    def longer_wins(model, messages):
        user = messages[-1]["content"]
        a = user.split("<response_a>\n")[1].split("\n</response_a>")[0]
        b = user.split("<response_b>\n")[1].split("\n</response_b>")[0]
        return "[[A]]" if len(a) > len(b) else "[[B]]"

    with ScriptedChatServer(longer_wins) as srv:
        judge = load_model("openai:judge", base_url=srv.base_url)
        report = check_votes(judge, get_recipe("pairwise"), votes, n_resamples=100)
        n_calls = len(srv.requests)
    assert n_calls == 5 * 2  # 5 distinct items (two experts voted on the same one), both orders
    with_ties, without_ties = report.agreement
    # judge picks: writing B, B, B; math A (turn 1), A (turn 2: 5*pi text is longer); coding B
    assert with_ties.n == 6 and with_ties.value == pytest.approx(4 / 6)
    assert without_ties.n == 4 and without_ties.value == pytest.approx(1.0)
    assert report.agreement_by_group["writing"][0].value == 1.0
    assert report.consistency == 1.0
    # both orders' texts re-read by FastChat's pairwise check: a lone [[A]] or [[B]] reads alike
    fastchat = report.authors["fastchat_pairwise"]
    assert (fastchat["compared"], fastchat["differ"], fastchat["reasons"]) == (10, 0, {})


def test_mtbench_votes_are_judged_with_the_references_capeval_mtbench_uses():
    """GPT-4's reference answers (FastChat's gpt-4.jsonl), not whichever answer file sorts first."""
    from capeval.judge.check import packaged_mtbench_references
    from capeval.judge.mtbench import reference_answers

    refs = packaged_mtbench_references()
    assert refs and refs == {qid: list(turns) for qid, turns in reference_answers().items()}
    assert "one brother" in refs[104][0]


def test_one_id_on_different_responses_names_each_apart():
    """Verdicts are paired with responses by id (judge-robustness's clean vs attacked, judge-check's
    rows): an id a CSV gives two responses must not let one's verdict stand for the other's."""
    rows = [
        {"id": "q1", "prompt": "p", "response": "GOOD answer", "human_score": "9"},
        {"id": "q1", "prompt": "p", "response": "bad answer", "human_score": "2"},
        {"id": "q1", "prompt": "p", "response": "bad answer", "human_score": "3"},  # a second rating of the same
        {"id": "q2", "prompt": "p2", "response": "other", "human_score": "5"},
        {"prompt": "p3", "response": "no id", "human_score": "4"},
    ]
    rated = csv_rated(rows)
    assert [r.item.id for r in rated] == ["q1#1", "q1#2", "q2", "row4"]
    assert [r.human_ratings for r in rated[:2]] == [(9.0,), (2.0, 3.0)]


def test_user_csv_and_cli_report(tmp_path, capsys):
    rows = read_rows(USER_CSV)
    assert detect_format(rows) == "csv"
    rated = csv_rated(rows)
    assert len(rated) == 9 and rated[0].group == "knowledge"

    def by_length(model, messages):
        n = len(_response(messages[-1]["content"]))
        return f"Short justification.\nRating: [[{min(10, 1 + n // 8)}]]"

    with ScriptedChatServer(by_length) as srv:
        out = tmp_path / "check.json"
        main(["judge-check", "--judge", f"openai:judge@{srv.base_url}", "--data", str(USER_CSV),
              "--db", str(tmp_path / "c.db"), "--json", str(out), "--no-progress", "--bootstrap", "200"])
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    judge_scores = [min(10, 1 + len(r.item.response) // 8) for r in rated]
    expected = stats.pearsonr(judge_scores, [r.human_mean for r in rated]).statistic
    assert report["overall"]["pearson"]["value"] == pytest.approx(expected)
    assert report["verdicts"]["parsed"] == 9 and report["recipe"] == "single"
    assert set(report["by_capability"]) == {"knowledge", "maths", "language"}
    assert "~0.70" in printed and "judge vs mean human rating" in printed
    assert f"Pearson {expected:.3f} vs CrossEval's ~0.70" in printed
    # the verdicts are a run in the store: every number traces back to its rows
    from capeval.store import Store

    with Store(tmp_path / "c.db") as store:
        run = store.runs()[0]
        samples = list(store.iter_samples(run["run_id"]))
        result = store.run_result(run["run_id"])
    assert json.loads(run["tasks"]) == ["judge-check"] and len(samples) == 9
    assert samples[0]["scores"] == {"judge_score": judge_scores[0], "human_mean": rated[0].human_mean}
    assert "Rating: [[" in samples[0]["response"][0]["text"]
    assert result.metric("judge-check", "pearson").value == pytest.approx(expected)
    expected_judge_bias = stats.spearmanr(judge_scores, [len(r.item.response) for r in rated]).statistic
    assert report["length_bias"]["judge"]["value"] == pytest.approx(expected_judge_bias)


def test_cli_rejects_unknown_columns(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\nq,a\n")
    with pytest.raises(SystemExit) as done:
        main(["judge-check", "--judge", "openai:judge@http://127.0.0.1:9/v1", "--data", str(bad), "--no-progress"])
    assert done.value.code == 2
    assert "cannot tell the data format" in capsys.readouterr().err


def test_ablation_csv_is_plot_data(tmp_path):
    rated = crosseval_rated(read_rows(CROSSEVAL))[:9]
    truth = {r.item.response: r.human_mean for r in rated}
    with ScriptedChatServer(make_rule(truth)) as srv:
        main(["judge-check", "--judge", f"openai:judge@{srv.base_url}", "--data", str(CROSSEVAL), "--limit", "3",
              "--db", str(tmp_path / "c.db"), "--ablation-csv", str(tmp_path / "abl.csv"), "--no-progress",
              "--bootstrap", "50"])
    lines = (tmp_path / "abl.csv").read_text().strip().splitlines()
    assert lines[0] == "n_references,method,value,ci_low,ci_high,n"
    assert [ln.split(",")[0] for ln in lines[1:]] == ["0"] * 3 + ["1"] * 3 + ["2"] * 3
    values = np.array([float(ln.split(",")[2]) for ln in lines[1:] if ln.split(",")[1] == "pearson"])
    assert values.shape == (3,)


def test_hub_source_offline_says_how_to_use_a_local_copy(capsys):
    with pytest.raises(SystemExit) as done:
        main(["judge-check", "--judge", "openai:judge@http://127.0.0.1:9/v1", "--data",
              "hub:lmsys/mt_bench_human_judgments", "--no-progress"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "cannot load hub dataset 'lmsys/mt_bench_human_judgments'" in err and "split 'human'" in err


def test_cli_mtbench_uses_reference_answers_for_math_and_coding(tmp_path):
    def rule(model, messages):
        return "[[B]]" if "<reference_answer>" in messages[-1]["content"] else "[[A]]"

    with ScriptedChatServer(rule) as srv:
        out = tmp_path / "mt.json"
        main(["judge-check", "--judge", f"openai:judge@{srv.base_url}", "--data", str(MTBENCH),
              "--db", str(tmp_path / "m.db"), "--json", str(out), "--no-progress", "--bootstrap", "50"])
        guided = [r for r in srv.requests if "<reference_answer>" in r["messages"][-1]["content"]]
    report = json.loads(out.read_text())
    assert report["recipe"] == "pairwise + reference_guided_pairwise"
    # question 111 (math, 2 turns) and 121 (coding) have packaged reference answers: 3 items x 2 orders
    assert len(guided) == 6
    turn2 = next(r["messages"][-1]["content"] for r in guided if "circumscribing" in r["messages"][-1]["content"])
    assert '<reference_answer number="1">' in turn2  # the turn-1 reference is shown for turn 2
    # reference-guided items: B in one order, A after the swap back -> inconsistent -> tie
    by_cat = {r["category"]: r["judge_winner"] for r in report["rows"]}
    assert by_cat["math"] == "tie" and by_cat["coding"] == "tie"


def test_cli_counts_verdicts_the_crosseval_authors_read_differently(tmp_path, capsys):
    """judge-check prints how many verdicts the authors' parser reads differently and why, and keeps
    the per-response difference in its JSON rows."""
    rated = crosseval_rated(read_rows(CROSSEVAL))
    no_heading, above = rated[0].item.response, rated[1].item.response

    def drifting(model, messages):
        text = _response(messages[-1]["content"])
        if text == no_heading:
            return "Mostly right.\nScore: 3/5"
        if text == above:
            return "#### Evaluation Score\nScore: 6/5"
        return "#### Evaluation Score\nScore: 4/5\n\nFor comparison, the first reference deserved Score: 2/5"

    with ScriptedChatServer(drifting) as srv:
        out = tmp_path / "check.json"
        main(["judge-check", "--judge", f"openai:judge@{srv.base_url}", "--data", str(CROSSEVAL), "--no-ablation",
              "--db", str(tmp_path / "c.db"), "--json", str(out), "--no-progress", "--bootstrap", "50"])
    printed = " ".join(capsys.readouterr().out.split())
    assert ("authors' parser: 2 of 18 verdicts read differently from the CrossEval authors' parse_score "
            "(llm-cross-capabilities evaluation/evaluate_response.py) (1 ") in printed
    assert "1 out_of_scale: the authors' parser reads a score outside the scale, which capeval refuses" in printed
    assert "1 no_heading: no 'Evaluation Score' heading" in printed
    report = json.loads(out.read_text())
    assert report["authors_reading"]["crosseval"]["compared"] == 18
    assert report["authors_reading"]["crosseval"]["reasons"] == {"out_of_scale": 1, "no_heading": 1}
    rows = {r["id"]: r for r in report["rows"]}
    assert rows[rated[1].item.id]["authors_reading"][0]["authors"] == 6.0
    assert rows[rated[1].item.id]["judge_score"] is None
    # the recap after the verdict does not replace it; the text is flagged
    assert rows[rated[2].item.id]["judge_score"] == 4.0
    assert rows[rated[2].item.id]["verdict_note"] == "2 different scores in the final section (4, 2); took the first"
