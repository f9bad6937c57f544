"""The report of a judged CrossEval run: model and judge are real HTTP endpoints on 127.0.0.1 whose
answers are scripted, so the judge's verdicts, unrated and unsupported samples reach the report as
they do from a remote API."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from markupsafe import escape

from capeval.engine import evaluate_tasks
from capeval.models import load_model
from capeval.report.builder import ReportOptions, build_report
from capeval.report.data import sample_anchor
from capeval.store import Store
from capeval.tasks import get_task
from scripted_chat import ScriptedChatServer

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "crosseval"
CASE = re.compile(r"\(case: (\w+)\)")
ANSWER = re.compile(r"Answer for case (\w+)")


def model_rule(model: str, messages: list[dict[str, str]]) -> str:
    """The model under test names its prompt's case, so the judge's verdict can depend on it."""
    m = CASE.search(messages[-1]["content"])
    return f"Answer for case {m.group(1) if m else 'none'}."


def judge_rule(model: str, messages: list[dict[str, str]]) -> str:
    """qN -> N/5 with a written rationale; "bad" never yields a readable score (left unrated)."""
    case = ANSWER.search("\n".join(m["content"] for m in messages))
    name = case.group(1) if case else "bad"
    if name.startswith("retry"):
        name = "q" + name[len("retry") :]
    if name == "bad":
        return "It is fine, I suppose."
    return f"Pros: answers the request.\nCons: terse (-1).\n\nEvaluation Score\nScore: {name[1:]}/5"


def to_100(r: float) -> float:
    return (r - 1) * 24.75 + 1


def test_crosseval_run_report_shows_capabilities_verdicts_and_unrated(tmp_path: Path) -> None:
    with ScriptedChatServer(model_rule) as mut_srv, ScriptedChatServer(judge_rule) as judge_srv:
        mut = load_model("openai:mut", base_url=mut_srv.base_url)
        judge = load_model("openai:judge", base_url=judge_srv.base_url)
        with Store(tmp_path / "capeval.db") as store:
            task = get_task("crosseval", data=str(FIXTURE))
            result = evaluate_tasks(mut, [task], store=store, progress=False, judge=judge)
            out = build_report(store, [result.run_id], tmp_path / "report.html", ReportOptions(arena_bootstrap=50))
    page = out.read_text(encoding="utf-8")
    overall = result.metric("crosseval", "score_100")
    cap_table = page[page.index('id="capabilities"') : page.index('id="weakest-link"')]
    # capability means on CrossEval's 1-100 scale, over rated samples only (the run's own numbers)
    for cap, value in {"English": (to_100(4) + to_100(2)) / 2, "Reasoning": 100.0, "Long Context": 75.25}.items():
        assert re.search(rf"<td>{re.escape(cap)}</td><td class=\"num\">{value:.1f} \[", cap_table), cap
    # samples the model could not attempt are in no capability's mean
    assert "Image Recognition" not in cap_table
    assert f"{overall.value:.1f}" in page[page.index('id="headline"') : page.index('id="tasks"')]

    # the judge's verdict is the sample's rationale; the unreadable verdict is marked unparsed
    rated = page[page.index(f'id="{sample_anchor(result.run_id, "crosseval", "ce-rs-1")}"') :]
    rated = rated[: rated.index("</article>")]
    assert "judge rationale" in rated and str(escape("Score: 5/5")) in rated and "Answer for case q5." in rated
    unrated = page[page.index(f'id="{sample_anchor(result.run_id, "crosseval", "ce-cr-2")}"') :]
    unrated = unrated[: unrated.index("</article>")]
    assert "unparsed" in unrated and "It is fine, I suppose." in unrated

    # cross capabilities whose parts were not both scored are named, not guessed
    wl = page[page.index('id="weakest-link"') : page.index('id="arena"')]
    assert "Coding &amp; Reasoning (missing part Coding)" in wl
    assert "(missing part Spanish)" in wl


RESPONSE = re.compile(r"<response>\s*(.*?)\s*</response>", re.DOTALL)
# the scripted judge's rating of each reference response of the fixture
JUDGE_RATING = {"A": 5, "B": 3, "C": 1}


def check_rule(model: str, messages: list[dict[str, str]]) -> str:
    """Rates the response under review by which reference answer it is (A, B or C)."""
    m = RESPONSE.search(messages[-1]["content"])
    letter = re.search(r"Reference answer (\w)", m.group(1)) if m else None
    rating = JUDGE_RATING.get(letter.group(1), 2) if letter else 2
    return f"Pros: on topic.\nCons: see above.\n\nEvaluation Score\nScore: {rating}/5"


def test_judge_check_json_feeds_the_judge_vs_human_section(tmp_path: Path) -> None:
    """`capeval judge-check --json` over a scripted judge, then `capeval report --judge-check` of it."""
    from capeval.cli import main

    check_json = tmp_path / "crosseval-check.json"
    db = tmp_path / "capeval.db"
    with ScriptedChatServer(check_rule) as judge_srv, ScriptedChatServer(model_rule) as mut_srv:
        argv = ["judge-check", "--judge", "openai:judge", "--judge-base-url", judge_srv.base_url, "--data", str(FIXTURE / "test.csv")]
        argv += ["--json", str(check_json), "--no-ablation", "--bootstrap", "200", "--no-progress", "--db", str(db)]
        assert _exit_code(main, argv) == 0
        with Store(db) as store:
            mut = load_model("openai:mut", base_url=mut_srv.base_url)
            judge = load_model("openai:judge", base_url=judge_srv.base_url)
            run = evaluate_tasks(mut, [get_task("crosseval", data=str(FIXTURE))], store=store, progress=False, judge=judge)
    out = tmp_path / "report.html"
    argv = ["report", run.run_id, "--db", str(db), "--out", str(out), "--judge-check", str(check_json), "--arena-bootstrap", "50"]
    assert _exit_code(main, argv) == 0
    page = out.read_text(encoding="utf-8")
    start = page.index('id="judge-human"')
    section = page[start : page.index("</section>", start)]
    assert "Not shown" not in section
    pearson = json.loads(check_json.read_text())["overall"]["pearson"]
    # the judge rates A 5, B 3, C 1 while people gave A 4-5, B 2-3, C 1: a strong correlation
    assert pearson["value"] > 0.9
    row = re.search(r"<td>all</td><td>pearson</td><td class=\"num\">([\d.]+)</td><td class=\"num\">\[([\d.]+), ([\d.]+)\]", section)
    assert row and float(row.group(1)) == pytest.approx(pearson["value"], abs=5e-4)
    assert float(row.group(2)) == pytest.approx(pearson["ci_low"], abs=5e-4)
    assert "crosseval-check: judge vs mean human rating" in section  # its scatter plot
    # both the run's verdicts and judge-check's are re-read by the CrossEval authors' parser: all agree
    readings = page[page.index('id="verdict-readings"') :]
    readings = readings[: readings.index("</section>")]
    n_verdicts = sum(1 for r in json.loads(check_json.read_text())["rows"] if r["verdict"])
    assert re.search(rf"<td>crosseval-check \(judge-check\)</td><td>judge-check</td><td>CrossEval authors&#39; parse_score[^<]*</td>"
                     rf"<td class=\"num\">{n_verdicts}</td><td class=\"num\">0</td><td>none</td>", readings)
    assert re.search(r"<td>crosseval</td><td>CrossEval authors&#39; parse_score[^<]*</td><td class=\"num\">7</td>"
                     r"<td class=\"num\">0</td><td>none</td>", readings)

    # judge-check also saved its verdicts as a run: reporting that run alone gives the same Pearson
    with Store(db) as store:
        (check_run,) = [r["run_id"] for r in store.runs() if json.loads(r["tasks"]) == ["judge-check"]]
    out2 = tmp_path / "check-run.html"
    assert _exit_code(main, ["report", check_run, "--db", str(db), "--out", str(out2), "--arena-bootstrap", "50"]) == 0
    page2 = out2.read_text(encoding="utf-8")
    section2 = page2[page2.index('id="judge-human"') : page2.index('id="sensitivity"')]
    row2 = re.search(r"<td>these runs</td><td>all</td><td>pearson</td><td class=\"num\">([\d.]+)</td>", section2)
    assert row2 and float(row2.group(1)) == pytest.approx(pearson["value"], abs=5e-4)
    # its correlations are coefficients, not percentages, and it has no headline score of its own
    tasks2 = page2[page2.index('id="tasks"') : page2.index('id="comparisons"')]
    assert re.search(rf"<td>pearson</td><td class=\"num\">{pearson['value']:.3f}</td>", tasks2)
    assert "has no scored samples" in page2[page2.index('id="headline"') : page2.index('id="tasks"')]


def _exit_code(main, argv: list[str]) -> int:  # type: ignore[no-untyped-def]
    try:
        main(argv)
    except SystemExit as e:
        return int(e.code or 0)
    return 0
