"""The report of a capability alteration study: its two runs give a chart of per-capability changes
and the follow-the-weaker table, with the same numbers as the study itself."""

from __future__ import annotations

from pathlib import Path

from alter_scripts import Judge, mut_rule, write_crosseval
from capeval.judge.alter import StudyConfig, run_study
from capeval.models import load_model
from capeval.report.builder import ReportOptions, build_report
from capeval.store import Store
from capeval.tasks import get_task
from scripted_chat import ScriptedChatServer


def test_report_shows_the_study(tmp_path: Path) -> None:
    with ScriptedChatServer(mut_rule) as mut, ScriptedChatServer(Judge()) as judge, Store(tmp_path / "c.db") as store:
        task = get_task("crosseval", data=str(write_crosseval(tmp_path / "ce")))
        res = run_study(
            load_model("openai:mut", base_url=mut.base_url), load_model("openai:judge", base_url=judge.base_url),
            task, StudyConfig("Reasoning", per_round=2, seed=3), store,
        )
        # the altered run first: the pairing does not depend on the order runs are given in
        out = build_report(store, [res.altered_run, res.baseline_run], tmp_path / "r.html", ReportOptions(arena_bootstrap=20))
        alone = build_report(store, [res.baseline_run], tmp_path / "one.html", ReportOptions(arena_bootstrap=20))
    page = out.read_text(encoding="utf-8")
    sec = page[page.index('id="alteration"') : page.index('id="arena"')]
    chart = sec[sec.index("<svg") : sec.index("</svg>")]
    assert chart.count('class="bar"') == 6  # 4 individual + 2 cross capabilities scored both times
    rows = {r.split("</td>")[0].split(">")[-1]: r for r in sec.split("<tr><td")[1:]}
    assert '<td class="num">4</td><td class="num">25.8</td><td class="num">75.2</td><td class="num">+49.5</td>' in rows["Reasoning"]
    assert '<td class="num">+49.5</td><td class="num">+0.0</td><td class="num">+24.8</td><td>follows the weaker part' in rows["Coding &amp; Reasoning"]
    assert "does not follow the weaker part" in rows["Spanish &amp; Reasoning"]
    assert "lacking: Image Recognition &amp; Reasoning" in rows["Image Recognition &amp; Reasoning"]
    assert "1 of 2 decided follow their weaker part" in sec
    assert res.baseline_run in sec and res.altered_run in sec
    # one run of the pair alone: the section says what it needs instead of drawing anything
    lone = alone.read_text(encoding="utf-8")
    lone_sec = lone[lone.index('id="alteration"') : lone.index('id="arena"')]
    assert "capeval alter" in lone_sec and "<svg" not in lone_sec
