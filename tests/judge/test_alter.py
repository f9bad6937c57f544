"""The capability alteration study: principle writing, round selection on the development split, the
two final runs, and the follow-the-weaker verdicts, with the model under test, the judge and the
writer as scripted OpenAI-compatible servers on 127.0.0.1 (and SmolLM2 as the model, slow)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import replace

import pytest

from alter_scripts import Judge, mut_rule, principle_list, write_crosseval
from capeval.analysis.alteration import alteration_effect, direction
from capeval.errors import CapevalError
from capeval.judge.alter import StudyConfig, run_study, split_items
from capeval.judge.principles import END_MARKER, Lesson, parse_update, update_principles
from capeval.models import load_model
from capeval.tasks import get_task
from capeval.types import GenerationParams
from scripted_chat import ScriptedChatServer


def to_100(r: float) -> float:
    return (r - 1) * 24.75 + 1


@pytest.fixture
def setup(tmp_path):
    judge = Judge()
    with ScriptedChatServer(mut_rule) as mut, ScriptedChatServer(judge) as jsrv:
        yield {
            "data": write_crosseval(tmp_path / "crosseval"),
            "mut": mut, "judge_srv": jsrv, "judge": judge,
            "mut_model": load_model("openai:mut", base_url=mut.base_url),
            "judge_model": load_model("openai:judge", base_url=jsrv.base_url),
        }


def test_parse_update_reads_the_list_and_rejects_bad_answers():
    text = f"## Analysis\nx\n\nAction: revise\n\n{principle_list('Long Context', 'A', 'B')}\ntrailing"
    action, body = parse_update(text.replace("## Principles for Long Context", "## principles for long  context:"), "Long Context")
    assert action == "REVISE" and body.startswith("### Principle 1: A") and body.endswith("- b.")
    for bad, why in (
        (principle_list("Coding", "A"), "Action"),
        ("Action: ADD\n" + principle_list("Coding", "A").replace(END_MARKER, ""), "END OF PRINCIPLES"),
        ("Action: ADD\n" + principle_list("Reasoning", "A"), "Principles for Coding"),
        ("Action: ADD\n## Principles for Coding\n- just a line\n" + END_MARKER, "Principle N"),
        ("Action: ADD\n" + principle_list("Coding", *"ABC"), "more than the 2"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_update(bad, "Coding", max_principles=2)
    # a KEEP with no list leaves the list alone
    assert parse_update("Action: KEEP\n## Principles for Coding\n" + END_MARKER, "Coding") == ("KEEP", "")


def test_writer_failures_keep_the_list_and_are_counted(store):
    answers = iter(["no format", "still no format", f"Action: ADD\n{principle_list('Coding', 'X')}"])
    with ScriptedChatServer(lambda m, msgs: next(answers)) as srv:
        writer = load_model("openai:w", base_url=srv.base_url)
        lessons = [Lesson(f"c{i}", "Coding", f"p{i}", "r", "e", 2.0) for i in range(2)]
        final, updates = update_principles(writer, lessons, "### Principle 1: OLD\n- old.", store=store)
        # lesson 1: unreadable twice (one retry) -> unchanged; lesson 2: ADD
        assert [u.parsed for u in updates] == [False, True] and updates[0].attempts == 2
        assert updates[0].principles.startswith("### Principle 1: OLD") and "Principles for Coding" in srv.requests[1]["messages"][-1]["content"]
        assert final.startswith("### Principle 1: X")
        # lesson 2 saw the list lesson 1 left (the old one)
        assert "OLD" in srv.requests[2]["messages"][-1]["content"]


def test_study_keeps_only_the_round_that_helps_and_measures_the_crosses(setup, store):
    task = get_task("crosseval", data=str(setup["data"]))
    config = StudyConfig("Reasoning", per_round=2, seed=3)
    res = run_study(setup["mut_model"], setup["judge_model"], task, config, store)

    assert len(res.dev_ids) == 4 and len(res.heldout_ids) == 4 and not set(res.dev_ids) & set(res.heldout_ids)
    assert res.baseline_dev == pytest.approx(to_100(2))
    r1, r2 = res.rounds
    assert not r1.accepted and r1.gain == pytest.approx(0.0) and "NOISE" in r1.candidate
    assert r2.accepted and r2.gain == pytest.approx(to_100(4) - to_100(2)) and r2.n_paired == 4
    assert [u.action for u in r2.updates] == ["REPLACE", "REPLACE"] and r2.updates[0].attempts == 2
    assert "STEPS" in res.principles and "NOISE" not in res.principles
    # round 2 learnt from answers given without principles (round 1 was undone)
    assert setup["judge"].writer_calls == Counter({1: 1, 2: 1, 3: 2, 4: 1})

    # the final runs: held-out Reasoning and every other supported prompt, never the dev prompts
    rows = store.query("SELECT run_id, sample_id FROM samples WHERE run_id IN (?, ?)", (res.baseline_run, res.altered_run))
    ids = {r["sample_id"] for r in rows}
    assert not ids & set(res.dev_ids) and set(res.heldout_ids) <= ids
    assert len(ids) == 4 + 4 + 3 + 4 + 3 + 3  # prompts the model cannot attempt (images) are left out

    e = res.effect
    assert e.changes["Reasoning"].diff == pytest.approx(to_100(4) - to_100(2)) and e.changes["Reasoning"].n == 4
    assert e.changes["Coding"].diff == pytest.approx(0.0) and e.changes["Spanish"].diff == pytest.approx(0.0)
    by = {x.cross: x for x in e.crosses}
    cr = by["Coding & Reasoning"]
    assert (cr.verdict, cr.weaker, cr.altered_role) == ("follows", "Reasoning", "weaker")
    assert cr.change_cross == pytest.approx(24.75) and cr.moved_like == ""  # exactly halfway between +0 and +49.5
    sr = by["Spanish & Reasoning"]
    assert (sr.verdict, sr.direction_weaker, sr.direction_cross) == ("does_not_follow", 1, 0)
    assert by["Image Recognition & Reasoning"].verdict == "missing" and by["Tool Use & Reasoning"].verdict == "missing"
    assert (e.n_follows, len(e.decided), e.follow_rate) == (1, 2, 0.5)


def test_a_second_run_of_the_study_pays_for_nothing(setup, store):
    task = get_task("crosseval", data=str(setup["data"]))
    config = StudyConfig("Reasoning", per_round=2, seed=3)
    first = run_study(setup["mut_model"], setup["judge_model"], task, config, store)
    n_mut, n_judge = len(setup["mut"].requests), len(setup["judge_srv"].requests)
    again = run_study(setup["mut_model"], setup["judge_model"], task, config, store)
    assert (len(setup["mut"].requests), len(setup["judge_srv"].requests)) == (n_mut, n_judge)
    assert again.principles == first.principles and again.effect.changes["Reasoning"].diff == first.effect.changes["Reasoning"].diff


def test_no_helpful_round_means_no_final_runs(setup, store):
    task = get_task("crosseval", data=str(setup["data"]))
    res = run_study(setup["mut_model"], setup["judge_model"], task, StudyConfig("Reasoning", per_round=2, rounds=1, seed=3), store)
    assert res.principles == "" and res.baseline_run is None and res.effect is None
    assert any("no round raised" in n for n in res.notes)
    assert store.query("SELECT COUNT(*) AS n FROM runs")[0]["n"] == 0


def test_bad_requests_are_clear_errors(setup, store):
    task = get_task("crosseval", data=str(setup["data"]))
    m, j = setup["mut_model"], setup["judge_model"]
    with pytest.raises(CapevalError, match="cross capability"):
        run_study(m, j, task, StudyConfig("Coding & Reasoning"), store)
    with pytest.raises(CapevalError, match="Coding, English, Reasoning, Spanish"):
        run_study(m, j, task, StudyConfig("Image Recognition"), store)
    with pytest.raises(CapevalError, match="has 3 usable prompts"):
        run_study(m, j, task, StudyConfig("English"), store)
    with pytest.raises(CapevalError, match="dev-fraction"):
        split_items(list(range(6)), 1.0, 0)  # type: ignore[arg-type]


def test_alteration_effect_rules():
    before = {"A": {"1": 20.0, "2": 30.0}, "B": {"1": 80.0}, "A & B": {"1": 10.0, "2": 20.0}, "C": {"1": 50.0},
              "A & C": {"1": 40.0}, "D": {"1": 27.0}, "A & D": {"1": 5.0}}
    after = {"A": {"1": 40.0, "2": 50.0, "3": 1.0}, "B": {"1": 79.5}, "A & B": {"1": 9.5, "2": 20.5}, "C": {"1": 51.0},
             "A & C": {"1": 60.0}, "D": {"1": 27.0}, "A & D": {"1": 9.0}}
    e = alteration_effect(before, after, "A", min_change=1.0, n_resamples=500)
    a = e.changes["A"]
    assert (a.n, a.before, a.after, a.diff, a.n_only_after) == (2, 25.0, 45.0, 20.0, 1)  # item 3 is not paired
    x = {c.cross: c for c in e.crosses}
    assert x["A & B"].verdict == "does_not_follow" and x["A & B"].direction_cross == 0  # +0.0 stays within 1 point
    # A (25) is the weaker part of A & C: +20 with A, while C's +1 counts as no change
    assert (x["A & C"].verdict, x["A & C"].weaker, x["A & C"].moved_like) == ("follows", "A", "weaker")
    assert x["A & D"].verdict == "no_weaker" and x["A & D"].altered_role == "tied"  # 25 vs 27
    assert (e.n_follows, len(e.decided)) == (1, 2)
    assert direction(-1.5, 1.0) == -1 and direction(0.9, 1.0) == 0
    with pytest.raises(CapevalError, match="no item scored both"):
        alteration_effect(before, {"B": {"1": 1.0}}, "A")
    with pytest.raises(CapevalError, match="cross capability"):
        alteration_effect(before, after, "A & B")


def test_cli_alter_and_alter_compare(setup, tmp_path, capsys):
    from capeval.cli import main

    db, out = tmp_path / "c.db", tmp_path / "study"
    main([
        "alter", "--model", f"openai:mut@{setup['mut'].base_url}", "--judge", f"openai:judge@{setup['judge_srv'].base_url}",
        "--capability", "Reasoning", "--data", str(setup["data"]), "--per-round", "2", "--seed", "3",
        "--db", str(db), "--out", str(out), "--no-progress",
    ])
    printed = capsys.readouterr().out
    assert "1 of 2 rounds kept" in printed and "1 of 2 cross capabilities follow" in printed
    study = json.loads((out / "study.json").read_text())
    assert "STEPS" in (out / "principles.md").read_text() and "STEPS" in (out / "system_prompt.txt").read_text()
    assert study["effect"]["n_follows"] == 1 and study["effect"]["follow_rate"] == 0.5
    base, alt = study["baseline_run"], study["altered_run"]

    main(["alter-compare", base, alt, "--capability", "Reasoning", "--db", str(db), "--json", str(tmp_path / "e.json")])
    assert "1 of 2 cross capabilities follow" in capsys.readouterr().out
    assert json.loads((tmp_path / "e.json").read_text())["changes"]["Reasoning"]["diff"] == pytest.approx(49.5)

    # the same analysis from a CSV a user brings (1-5 ratings, auto-scaled)
    rows = [("before", "crosseval", f"x{i}", "rating", b, cap) for i, (cap, b, _) in enumerate(
        [("Reasoning", 2, 4), ("Reasoning", 2, 4), ("Coding", 4, 4), ("Coding & Reasoning", 2, 3)])]
    rows += [("after", t, s, m, {"Reasoning": 4, "Coding": 4, "Coding & Reasoning": 3}[c], c) for _, t, s, m, _, c in rows]
    path = tmp_path / "s.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "task", "sample_id", "metric", "value", "capability"])
        w.writerows(rows)
    main(["alter-compare", "before", "after", "--capability", "Reasoning", "--csv", str(path)])
    printed = capsys.readouterr().out
    assert "1 of 1 cross capabilities follow" in printed and "+49.50" in printed


@pytest.mark.slow
def test_smollm2_gets_the_principles_as_its_system_prompt(smollm2, tmp_path, store):
    """SmolLM2 (through its chat template) as the model under test; the judge rates by answer length,
    so whatever it writes, the study runs to the end on a real model."""

    def judge(model: str, messages: list[dict[str, str]]) -> str:
        text = "\n".join(m["content"] for m in messages)
        if "current principles" in text:
            return f"Action: ADD\n{principle_list('Reasoning', 'STEPS: answer in numbered steps')}"
        answer = text.split("<response>")[-1].split("</response>")[0]
        return f"Score: {1 + min(4, len(answer.split()) // 8)}/5"

    task = get_task("crosseval", data=str(write_crosseval(tmp_path / "d")))
    task = replace(task, generation=GenerationParams(max_tokens=48))
    with ScriptedChatServer(judge) as srv:
        j = load_model("openai:judge", base_url=srv.base_url)
        res = run_study(smollm2, j, task, StudyConfig("Reasoning", per_round=4, limit_per_capability=4, min_gain=-100.0), store)
    assert res.rounds[0].accepted and res.altered_run
    prompts = [r["prompt"] for r in store.query("SELECT prompt FROM samples WHERE run_id = ?", (res.altered_run,))]
    assert prompts and all("[system] When you answer prompts that involve Reasoning" in p and "STEPS" in p for p in prompts)
    base = [r["prompt"] for r in store.query("SELECT prompt FROM samples WHERE run_id = ?", (res.baseline_run,))]
    assert base and not any("[system]" in p for p in base)
    assert "Reasoning" in res.effect.changes and res.effect.changes["Reasoning"].n >= 1


def test_cli_without_data_offline_points_to_data(tmp_path, capsys):
    from capeval.cli import main

    with pytest.raises(SystemExit) as e:
        main(["alter", "--model", "openai:m@http://127.0.0.1:9/v1", "--judge", "openai:j@http://127.0.0.1:9/v1",
              "--capability", "Reasoning", "--db", str(tmp_path / "c.db")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "offline" in err and "--data DIR" in err
