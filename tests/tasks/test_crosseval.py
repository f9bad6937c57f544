"""CrossEval: loading the project's fixture, unsupported prompts, and exact 1-100 aggregation with a
scripted judge served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from capeval.crosseval.references import read_references
from capeval.crosseval.task import CrossEvalTask, crosseval_breakdown
from capeval.engine import evaluate_tasks
from capeval.errors import CapevalError
from capeval.models import load_model
from capeval.tasks import get_task
from capeval.types import GenerationParams
from scripted_chat import ScriptedChatServer

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "crosseval"
CASE = re.compile(r"\(case: (\w+)\)")
ANSWER = re.compile(r"Answer for case (\w+)")


def to_100(r: float) -> float:
    return (r - 1) * 24.75 + 1


def mut_rule(model: str, messages: list[dict[str, str]]) -> str:
    """The model under test: names the case of its prompt, so the judge can script its verdict."""
    m = CASE.search(messages[-1]["content"])
    return f"Answer for case {m.group(1) if m else 'none'}."


class JudgeScript:
    """Verdicts by the case named in the response under review: qN -> N/5, bad -> never a score,
    retryN -> an unreadable verdict first, then N/5 (checks the one parse retry)."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def __call__(self, model: str, messages: list[dict[str, str]]) -> str:
        text = "\n".join(m["content"] for m in messages)
        case = ANSWER.search(text)
        assert case, "the judge prompt must contain the response under review"
        name = case.group(1)
        self.seen[name] += 1
        if name == "bad":
            return "This response is fine, I think."
        if name.startswith("retry"):
            if self.seen[name] == 1:
                return "Hard to say."
            name = "q" + name[len("retry"):]
        return f"Pros: clear.\nCons: none (-0).\n\nEvaluation Score\nScore: {name[1:]}/5"


@pytest.fixture
def servers():
    script = JudgeScript()
    with ScriptedChatServer(mut_rule) as mut, ScriptedChatServer(script) as judge:
        yield mut, judge, script


def test_fixture_loads_with_references_and_support_decisions():
    task = get_task("crosseval", data=str(FIXTURE))
    loaded = task.load()
    assert loaded.malformed == []
    by_id = {s.id: s for s in loaded.samples}
    assert len(by_id) == 10
    assert by_id["ce-en-1"].metadata == {
        "capability": "English", "type": "individual", "l1_category": "Writing", "l2_category": "Email", "difficulty": "easy"
    }
    assert by_id["ce-cr-1"].metadata["type"] == "cross"
    refs = by_id["ce-en-1"].fields["references"]
    assert [r.ratings for r in refs] == [(4.0, 5.0), (2.0, 3.0), (1.0,)]  # a blank rating cell is skipped
    assert refs[1].explanations == ("The main step is wrong.", "Half right.")
    unsupported = {i: s.fields["unsupported"] for i, s in by_id.items() if s.fields["unsupported"]}
    assert set(unsupported) == {"ce-im-1", "ce-tu-1", "ce-lc-2"}
    assert "image" in unsupported["ce-im-1"]
    assert "tools" in unsupported["ce-tu-1"]
    assert "missing_novel.txt" in unsupported["ce-lc-2"] and "attachments" in unsupported["ce-lc-2"]
    # the URL's local copy under attachments/ is put before the prompt, as the authors do
    lc = by_id["ce-lc-1"].fields["user_prompt"]
    assert lc.startswith("Attached:\nQuarterly report, Q3.") and lc.endswith("User Prompt:\n" + by_id["ce-lc-1"].fields["prompt"])


def test_out_of_range_human_rating_makes_the_row_malformed(tmp_path):
    rows = (FIXTURE / "test.csv").read_text(encoding="utf-8").splitlines()
    rows[1] = rows[1].replace(",4,\"Correct, misses a detail.\"", ",7,\"Correct, misses a detail.\"", 1)
    (tmp_path / "test.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    loaded = get_task("crosseval", data=str(tmp_path)).load()
    assert len(loaded.samples) == 9
    assert "outside 1..5" in loaded.malformed[0] and "row 0" in loaded.malformed[0]
    with pytest.raises(ValueError):
        read_references({"response_1": "x", "response_1_human_1_rating": "0"})


def test_scripted_judge_gives_exact_capability_means(tmp_path, servers, store):
    mut_srv, judge_srv, script = servers
    task = get_task("crosseval", data=str(FIXTURE))
    mut = load_model("openai:mut", base_url=mut_srv.base_url)
    judge = load_model("openai:judge", base_url=judge_srv.base_url)
    result = evaluate_tasks(mut, [task], store=store, progress=False, judge=judge)

    # unsupported prompts are never sent to the model under test
    assert len(mut_srv.requests) == 7
    sent = " ".join(r["messages"][-1]["content"] for r in mut_srv.requests)
    assert "apples" not in sent and "monthly sales" not in sent and "betrays" not in sent
    assert any("3 samples unsupported" in w for w in result.warnings)

    # the judge saw all three references with both human explanations, and the attached text
    first = judge_srv.requests[0]["messages"][-1]["content"]
    for text in ("Reference answer A", "Reference answer B", "Reference answer C", "Half right.", "Unhelpful refusal."):
        assert text in first
    lc_call = next(r for r in judge_srv.requests if "case q4" in r["messages"][-1]["content"] and "Quarterly" in r["messages"][-1]["content"])
    assert "Revenue grew 12%" in lc_call["messages"][-1]["content"]
    assert script.seen["retry2"] == 2 and script.seen["bad"] == 2  # one retry each, then counted

    overall = result.metric("crosseval", "score_100")
    rated = [4, 2, 5, 3, 4, 2]  # ce-en-1, ce-en-2, ce-rs-1, ce-cr-1, ce-lc-1, ce-sr-1 (ce-cr-2 unrated)
    assert overall.n == 6
    assert overall.value == pytest.approx(sum(map(to_100, rated)) / 6)
    assert overall.unparsed_rate == pytest.approx(1 / 7)
    cap = {m.task.split(":", 1)[1]: m for m in result.metrics if m.task.startswith("crosseval/capability:") and m.metric == "score_100"}
    assert cap["English"].value == pytest.approx((to_100(4) + to_100(2)) / 2) == pytest.approx(50.5)
    assert cap["Reasoning"].value == pytest.approx(100.0)
    assert cap["Coding & Reasoning"].value == pytest.approx(50.5) and cap["Coding & Reasoning"].n == 1
    assert cap["Long Context"].value == pytest.approx(75.25)
    assert cap["Spanish & Reasoning"].value == pytest.approx(25.75)
    assert "Image Recognition" not in cap and "Tool Use & Coding" not in cap
    kinds = {m.task: m.value for m in result.metrics if m.task.startswith("crosseval/type:") and m.metric == "score_100"}
    assert kinds["crosseval/type:individual"] == pytest.approx((75.25 + 25.75 + 100 + 75.25) / 4)
    assert kinds["crosseval/type:cross"] == pytest.approx((50.5 + 25.75) / 2)
    diff = {m.task: m.value for m in result.metrics if m.task.startswith("crosseval/difficulty:")}
    assert diff == pytest.approx(
        {"crosseval/difficulty:easy": 75.25, "crosseval/difficulty:medium": (100 + 75.25 + 25.75) / 3, "crosseval/difficulty:hard": 38.125}
    )

    # the printed breakdown, rebuilt from the store, has the L1/L2 categories and the counts
    assert task.breakdown is not None
    rows = task.breakdown(store, result.run_id)
    by = {(r.group, r.name): r for r in rows}
    assert by[("capability", "Coding & Reasoning")].n_unrated == 1
    assert by[("capability", "Image Recognition")].n_unsupported == 1 and by[("capability", "Image Recognition")].n == 0
    assert by[("l1", "Writing")].value == pytest.approx(50.5)
    assert by[("l2", "Reports")].value == pytest.approx(75.25)
    assert by[("overall", "all")].n_unsupported == 3
    # rows come out individual capabilities first, in the paper's order
    caps = [r.name for r in rows if r.group == "capability"]
    assert caps[:3] == ["English", "Reasoning", "Image Recognition"]

    # every verdict is kept for audit in the stored sample
    stored = {r["sample_id"]: r for r in store.iter_samples(result.run_id, "crosseval")}
    assert stored["ce-cr-2"]["metadata"]["unrated"] is True and stored["ce-cr-2"]["parsed"] is False
    assert "Score: 5/5" in stored["ce-rs-1"]["metadata"]["verdict"]
    assert stored["ce-im-1"]["metadata"]["unsupported"] is True

    # a re-run pays for nothing: model and judge calls come from the store
    n_mut, n_judge = len(mut_srv.requests), len(judge_srv.requests)
    again = evaluate_tasks(mut, [task], store=store, progress=False, judge=judge)
    assert (len(mut_srv.requests), len(judge_srv.requests)) == (n_mut, n_judge)
    assert again.metric("crosseval", "score_100").value == pytest.approx(overall.value)


def test_breakdown_of_scores_without_store():
    from capeval.types import Score

    def s(i: str, cap: str, r: float | None, **meta: object) -> Score:
        values = {} if r is None else {"score_100": to_100(r)}
        return Score(i, "crosseval", values, metadata={"capability": cap, "type": "cross" if "&" in cap else "individual", **meta})

    rows = crosseval_breakdown([s("1", "Coding", 5), s("2", "Coding", 1), s("3", "Coding & Reasoning", None, unrated=True)])
    by = {(r.group, r.name): r for r in rows}
    assert by[("capability", "Coding")].value == pytest.approx(50.5)
    assert by[("capability", "Coding & Reasoning")].n == 0 and by[("capability", "Coding & Reasoning")].n_unrated == 1


def test_without_a_judge_the_error_says_to_pass_one(servers, store):
    mut_srv, _, _ = servers
    task = get_task("crosseval", data=str(FIXTURE))
    mut = load_model("openai:mut", base_url=mut_srv.base_url)
    with pytest.raises(CapevalError) as e:
        evaluate_tasks(mut, [task], store=store, progress=False, limit=2)
    assert "--judge" in (e.value.hint or "")


def test_missing_local_copy_is_a_dataset_error(tmp_path):
    with pytest.raises(CapevalError, match="not found"):
        get_task("crosseval", data=str(tmp_path / "nope"))


def test_attachment_folder_from_environment(tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    files = tmp_path / "files"
    files.mkdir()
    (files / "missing_novel.txt").write_text("Chapter 1. Tom betrays the narrator.", encoding="utf-8")
    monkeypatch.setenv("CAPEVAL_CROSSEVAL_FILES", str(files))
    by_id = {s.id: s for s in get_task("crosseval", data=str(data)).load().samples}
    assert by_id["ce-lc-2"].fields["unsupported"] is None
    assert "Tom betrays" in by_id["ce-lc-2"].fields["user_prompt"]


@pytest.mark.slow
def test_smollm2_as_model_and_judge_counts_parse_failures(smollm2, store):
    """The bundled 135M model answers and judges 3 CrossEval prompts: whatever it writes, every
    supported sample ends rated or counted as unrated, and nothing crashes."""
    task = get_task("crosseval", data=str(FIXTURE))
    assert isinstance(task, CrossEvalTask)
    task = replace(task, generation=GenerationParams(max_tokens=32), judge_max_tokens=48)
    result = evaluate_tasks(smollm2, [task], store=store, progress=False, judge=smollm2, limit=3)
    rows = list(store.iter_samples(result.run_id, "crosseval"))
    assert len(rows) == 3
    for r in rows:
        assert r["parsed"] == ("score_100" in r["scores"])
        assert r["metadata"].get("unrated", False) == (not r["parsed"])
    m = result.metric("crosseval", "score_100")
    assert m.n == sum(r["parsed"] for r in rows)
    assert m.unparsed_rate == pytest.approx(sum(not r["parsed"] for r in rows) / 3)
    assert m.n == 0 or 1.0 <= m.value <= 100.0


def test_capeval_run_prints_the_breakdown(tmp_path, servers, capsys):
    """`capeval run --tasks crosseval --judge M --data crosseval=PATH` end to end on the fixture."""
    from capeval.cli import main

    mut_srv, judge_srv, _ = servers
    out = tmp_path / "run.json"
    main([
        "run", "--model", f"openai:mut@{mut_srv.base_url}", "--judge", f"openai:judge@{judge_srv.base_url}",
        "--tasks", "crosseval", "--data", f"crosseval={FIXTURE}", "--db", str(tmp_path / "c.db"),
        "--json", str(out), "--no-progress",
    ])
    printed = capsys.readouterr().out
    for group in ("type", "capability", "l1", "l2", "difficulty"):
        assert f"crosseval by {group} (score_100)" in printed
    for name in ("Spanish & Reasoning", "Dynamic programming", "Summarization", "medium"):
        assert name in printed
    import json

    metrics = {(m["task"], m["metric"]): m for m in json.loads(out.read_text())["metrics"]}
    assert metrics[("crosseval/capability:English", "score_100")]["value"] == pytest.approx(50.5)
    assert metrics[("crosseval", "score_100")]["n"] == 6


def test_offline_hub_error_points_to_a_local_copy():
    with pytest.raises(CapevalError) as e:
        get_task("crosseval").load()
    assert "MingZhong/crosseval" in str(e.value) and "--data" in (e.value.hint or "")


def test_all_verdicts_failing_still_reports_the_unparsed_rate(store):
    def never_parses(model: str, messages: list[dict[str, str]]) -> str:
        return "No idea."

    with ScriptedChatServer(mut_rule) as mut_srv, ScriptedChatServer(never_parses) as judge_srv:
        mut = load_model("openai:mut", base_url=mut_srv.base_url)
        judge = load_model("openai:judge", base_url=judge_srv.base_url)
        result = evaluate_tasks(mut, [get_task("crosseval", data=str(FIXTURE))], store=store, progress=False, judge=judge, limit=2)
    m = result.metric("crosseval", "score_100")
    assert m.n == 0 and m.unparsed_rate == 1.0 and m.warning == "no scored samples"


def drifting_judge(model: str, messages: list[dict[str, str]]) -> str:
    """Verdicts that the CrossEval authors' parser and capeval read alike or not: q4 adds a note with
    another score after its verdict, q3 has no Evaluation Score heading, q5 stays at 6/5."""
    name = ANSWER.search("\n".join(m["content"] for m in messages)).group(1)
    if name == "bad":
        return "This response is fine, I think."
    if name == "q4":
        return "#### Evaluation Score\nScore: 4/5\n\nNote: a better answer would get Score: 5/5"
    if name == "q3":
        return "The response is fine.\nScore: 3/5"
    if name == "q5":
        return "#### Evaluation Score\nScore: 6/5"
    return f"#### Evaluation Score\nScore: {name[-1]}/5"


def test_verdicts_read_as_the_authors_read_them_and_differences_counted(store):
    """The first score after the Evaluation Score heading counts (a note after it does not), texts
    with several scores are flagged in the sample, and the report counts the verdicts the authors'
    parser reads differently, with the reason."""
    from capeval.report.data import load_inputs
    from capeval.report.sections import verdict_readings_section

    with ScriptedChatServer(mut_rule) as mut_srv, ScriptedChatServer(drifting_judge) as judge_srv:
        mut = load_model("openai:mut", base_url=mut_srv.base_url)
        judge = load_model("openai:judge", base_url=judge_srv.base_url)
        result = evaluate_tasks(mut, [get_task("crosseval", data=str(FIXTURE))], store=store, progress=False, judge=judge)
    stored = {r["sample_id"]: r for r in store.iter_samples(result.run_id, "crosseval")}
    # ce-en-1 and ce-lc-1 are q4: read 4 (the last score of the section would have been 5), flagged
    for sid in ("ce-en-1", "ce-lc-1"):
        assert stored[sid]["scores"]["rating"] == 4.0
        assert stored[sid]["metadata"]["verdict_note"] == "2 different scores in the final section (4, 5); took the first"
        assert "authors_reading" not in stored[sid]["metadata"]
    assert stored["ce-cr-1"]["scores"]["rating"] == 3.0  # q3: no heading, capeval's own rule
    assert stored["ce-cr-1"]["metadata"]["authors_reading"] == [
        {"parser": "crosseval", "authors": None, "capeval": 3.0, "reason": "no_heading"}]
    assert stored["ce-rs-1"]["parsed"] is False  # q5: 6/5 stays unparsed after the retry
    assert stored["ce-rs-1"]["metadata"]["authors_reading"] == [
        {"parser": "crosseval", "authors": 6.0, "capeval": None, "reason": "out_of_scale"}]
    assert "authors_reading" not in stored["ce-cr-2"]["metadata"]  # neither reads "fine, I think"

    section = verdict_readings_section(load_inputs(store, [result.run_id]).runs)
    assert section.missing is None
    (row,) = section.tables[0].rows
    cells = [c.text for c in row]
    assert cells[1:5] == ["crosseval", "CrossEval authors' parse_score (llm-cross-capabilities evaluation/evaluate_response.py)", "7", "2"]
    assert "1: the authors' parser reads a score outside the scale" in cells[5]
    assert "1: no 'Evaluation Score' heading" in cells[5]
