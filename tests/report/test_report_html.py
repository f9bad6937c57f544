"""The report's HTML without a browser: sections, numbers, charts, links and offline-ness."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import asdict, replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_fixtures import ArithmeticModel, ReportFixture, arithmetic_task, write_dataset

from capeval.analysis.contamination import split_gap
from capeval.analysis.weakest_link import weakest_link
from capeval.engine import evaluate_tasks
from capeval.prompting import PromptConfig
from capeval.report.builder import ReportOptions, build_report
from capeval.scoring import numeric_match
from capeval.store import Store
from capeval.types import Score

# Fewer arena resamples than the default 1000 keep the test quick; the CIs stay well defined.
OPTIONS = ReportOptions(arena_bootstrap=200)


class Page(HTMLParser):
    """Elements by id, links, SVG charts with their drawn elements, and sections' texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: dict[str, str] = {}
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.charts: list[dict] = []
        self.articles: list[str] = []
        self.scripts = 0
        self.stylesheets = 0
        self._svg: dict | None = None
        self._section: list[str] = []
        self.text: dict[str, list[str]] = defaultdict(list)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            assert a["id"] not in self.ids, f"duplicate id {a['id']}"
            self.ids[a["id"]] = tag
        if tag == "section":
            self._section.append(a.get("id", ""))
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if "src" in a:
            self.srcs.append(a["src"])
        if tag == "script":
            self.scripts += 1
        if tag == "link" and "stylesheet" in a.get("rel", ""):
            self.stylesheets += 1
        if tag == "article" and "sample" in a.get("class", ""):
            self.articles.append(a["id"])
        if tag == "svg":
            self._svg = {"class": a.get("class", ""), "label": a.get("aria-label", ""), "shapes": 0, "series": []}
            self.charts.append(self._svg)
        elif self._svg is not None and tag in ("rect", "circle", "polygon", "path", "line"):
            self._svg["shapes"] += 1
            if "radar-series" in a.get("class", ""):
                self._svg["series"].append(a.get("data-series"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg = None
        if tag == "section" and self._section:
            self._section.pop()

    def handle_data(self, data: str) -> None:
        if self._section and data.strip():
            self.text[self._section[-1]].append(data.strip())

    def section_text(self, section_id: str) -> str:
        return " ".join(self.text[section_id])


def parse(html: str) -> Page:
    p = Page()
    p.feed(html)
    return p


@pytest.fixture(scope="module")
def rendered(report_fixture: ReportFixture, tmp_path_factory: pytest.TempPathFactory) -> tuple[Page, str]:
    out = tmp_path_factory.mktemp("html") / "report.html"
    build_report(report_fixture.store, report_fixture.run_ids, out, OPTIONS)
    html = out.read_text(encoding="utf-8")
    return parse(html), html


def test_every_section_renders_with_its_chart(rendered: tuple[Page, str]) -> None:
    page, _ = rendered
    for sid in ("headline", "tasks", "comparisons", "capabilities", "weakest-link", "arena", "judge-human", "sensitivity", "runs", "samples"):
        assert page.ids.get(sid) == "section", sid
        assert "Not shown:" not in page.section_text(sid), page.section_text(sid)[:300]
    kinds = [c["class"].split("chart-")[1] for c in page.charts]
    # headline + task bars, radar, weakest-link strip, per vote source an interval chart and a heat map,
    # judge-vs-human scatter, prompt-sensitivity ranges
    for kind in ("interval", "radar", "strip", "heatmap", "scatter", "range"):
        assert kind in kinds, kinds
    assert kinds.count("heatmap") == 2  # human and judge votes
    for c in page.charts:
        assert c["shapes"] > 0, f"empty chart {c['label']}"


def test_radar_draws_one_polygon_per_run(rendered: tuple[Page, str], report_fixture: ReportFixture) -> None:
    page, _ = rendered
    (radar,) = [c for c in page.charts if "chart-radar" in c["class"]]
    assert len(radar["series"]) == len(report_fixture.run_ids)
    # two runs of tiny-strong under different prompts get distinct labels
    assert "tiny-strong [default prompt]" in radar["series"] and "tiny-strong [prompt v1]" in radar["series"]


def test_headline_and_task_numbers_match_the_stored_results(rendered: tuple[Page, str], report_fixture: ReportFixture) -> None:
    page, _ = rendered
    headline = page.section_text("headline")
    tasks = page.section_text("tasks")
    for rid in report_fixture.run_ids:
        m = report_fixture.store.run_result(rid).metric("arith", "exact_match")
        # one task: the headline is that task's accuracy, in points
        assert f"{m.value * 100:.1f}" in headline
        assert f"[{m.ci_low * 100:.1f}, {m.ci_high * 100:.1f}]" in tasks
        assert rid in headline


def test_paired_comparison_of_two_runs_matches_the_stored_items(rendered: tuple[Page, str], report_fixture: ReportFixture) -> None:
    page, _ = rendered
    store = report_fixture.store
    strong, weak = report_fixture.run_ids[0], report_fixture.run_ids[2]

    def items(rid: str) -> dict[str, float]:
        rows = store.query("SELECT sample_id, value FROM scores WHERE run_id = ? AND metric = 'exact_match'", (rid,))
        return {r["sample_id"]: r["value"] for r in rows}

    a, b = items(strong), items(weak)
    # unreadable answers have no score row and count as 0, as in the run's own metric
    ids = {r["sample_id"] for r in store.query("SELECT sample_id FROM samples WHERE run_id = ?", (strong,))}
    diff = sum(a.get(i, 0.0) - b.get(i, 0.0) for i in ids) / len(ids)
    text = page.section_text("comparisons")
    assert re.search(rf"arith tiny-strong \[default prompt\] tiny-weak {diff * 100:.1f} \[[-\d.]+, [-\d.]+\] [\d.]+ [\d.]+ 40 tiny-strong \[default prompt\] is better", text), text


def test_group_metrics_show_as_a_breakdown(rendered: tuple[Page, str], report_fixture: ReportFixture) -> None:
    page, _ = rendered
    tasks = page.section_text("tasks")
    assert "arith: breakdown by group" in tasks
    res = report_fixture.store.run_result(report_fixture.run_ids[2])
    m = res.metric("arith/capability:Coding & Reasoning", "exact_match")
    assert f"capability:Coding & Reasoning {res.model} exact_match {m.value * 100:.1f} [{m.ci_low * 100:.1f}, {m.ci_high * 100:.1f}] {m.n}" in tasks


def test_weakest_link_counts_equal_the_analysis_on_stored_scores(rendered: tuple[Page, str], report_fixture: ReportFixture) -> None:
    """Recompute capability means straight from the store's rows and compare the report's totals."""
    page, _ = rendered
    store = report_fixture.store
    per_run: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in store.query(
        "SELECT s.run_id, json_extract(s.metadata, '$.capability') AS cap, c.value FROM samples s "
        "JOIN scores c USING (run_id, task, sample_id) WHERE c.metric = 'exact_match'"
    ):
        per_run[r["run_id"]][r["cap"]].append(r["value"] * 100)
    table = {rid: {cap: sum(v) / len(v) for cap, v in caps.items()} for rid, caps in per_run.items()}
    result = weakest_link(table)
    text = page.section_text("weakest-link")
    totals = re.search(r"all models ((?:\d+ ){3}\d+)", text)
    assert totals, text[:500]
    assert [int(x) for x in totals.group(1).split()] == [result.counts[c] for c in ("below_both", "closer_to_weaker", "closer_to_stronger", "above_both")]
    assert f"{result.n_cases} cases" in text


def test_every_internal_link_resolves_and_every_sample_is_linked(rendered: tuple[Page, str], report_fixture: ReportFixture) -> None:
    page, _ = rendered
    internal = [h[1:] for h in page.hrefs if h.startswith("#")]
    missing = [h for h in internal if h not in page.ids]
    assert not missing, missing[:5]
    assert len(page.articles) == report_fixture.n_samples * len(report_fixture.run_ids)
    assert set(page.articles) <= set(internal), "a sample without a link to it"


def test_the_file_is_self_contained(rendered: tuple[Page, str]) -> None:
    page, html = rendered
    assert page.scripts == 0 and page.stylesheets == 0 and page.srcs == []
    external = [h for h in page.hrefs if not h.startswith("#")]
    assert external == []
    # the only URL in the file is the SVG namespace, which browsers never fetch
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}


def test_samples_show_prompt_output_answer_and_rationale(rendered: tuple[Page, str], report_fixture: ReportFixture) -> None:
    page, _ = rendered
    rid = report_fixture.run_ids[0]
    sample = next(report_fixture.store.iter_samples(rid))
    text = page.section_text("samples")
    assert sample["prompt"].strip().splitlines()[-1] in text
    assert sample["response"][0]["text"] in text
    assert sample["metadata"]["judge_rationale"] in text
    assert "judge rationale" in text and "extracted answer" in text


def test_arena_and_agreement_tables(rendered: tuple[Page, str]) -> None:
    page, _ = rendered
    arena = page.section_text("arena")
    # 3 models, 30 battles per pair: 90 human votes; the judge voted on every third battle
    assert "human votes: 90 battles" in arena and "judge votes: 30 battles" in arena
    judge = page.section_text("judge-human")
    # the judge agrees with the person on half of the 30 doubly-judged battles (see add_votes)
    assert re.search(r"with ties 50\.0 \[[\d.]+, [\d.]+\] 30", judge), judge


def test_missing_inputs_are_named_not_faked(tmp_path: Path) -> None:
    """One run, no votes, ratings, variants or contamination checks: those sections say which
    command makes their data, and draw nothing."""
    store = Store(tmp_path / "one.db")
    task = arithmetic_task(write_dataset(tmp_path))
    # a prompt with markup checks that sample text is escaped, never interpreted
    res = evaluate_tasks(
        ArithmeticModel("solo", 0.2), [task], PromptConfig(system="<script>alert(1)</script> Add."), store=store, progress=False
    )
    out = build_report(store, [res.run_id], tmp_path / "r.html", OPTIONS)
    html = out.read_text(encoding="utf-8")
    page = parse(html)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "capeval annotate" in page.section_text("arena")
    assert "--prompt-variants" in page.section_text("sensitivity")
    assert "--gap" in page.section_text("contamination")
    assert "another --model" in page.section_text("comparisons")
    assert "Not shown:" in page.section_text("judge-human")
    kinds = {c["class"].split("chart-")[1] for c in page.charts}
    assert kinds == {"interval", "radar", "strip"}  # headline/task bars, capabilities, weakest link
    store.close()


def test_contamination_flags_from_runs_and_json(report_fixture: ReportFixture, tmp_path: Path) -> None:
    store = report_fixture.store
    strong, _, weak = report_fixture.run_ids[:3]
    # a JSON file as `capeval contamination gap --json` writes it: no gap between equal scores
    json_path = tmp_path / "even-split.json"
    json_path.write_text(json.dumps(asdict(split_gap([1, 0] * 20, [0, 1] * 20, n_resamples=500))))
    out = build_report(
        store, [strong], tmp_path / "c.html", ReportOptions(arena_bootstrap=50, gap_pairs=(f"{strong}:{weak}",), contamination_files=(json_path,))
    )
    text = parse(out.read_text(encoding="utf-8")).section_text("contamination")
    # strong (public) vs weak (private) differ far beyond the CI: flagged; the even split is not
    assert "FLAGGED: public items scored higher than the CI allows" in text
    assert "even-split" in text and "ok: the gap is within what the CIs allow" in text


def test_cli_writes_the_report_and_reports_unknown_runs(report_fixture: ReportFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from capeval.cli import main

    out = tmp_path / "cli.html"
    rid = report_fixture.run_ids[1]
    assert _exit_code(main, ["report", rid[:-1], "--out", str(out), "--db", str(report_fixture.db_path), "--arena-bootstrap", "50", "--max-samples", "3"]) == 0
    page = parse(out.read_text(encoding="utf-8"))
    assert len(page.articles) == 3  # --max-samples caps the audit rows, not the numbers
    assert "3 of 40 samples" in page.section_text("samples")
    assert _exit_code(main, ["report", "no-such-run", "--out", str(tmp_path / "x.html"), "--db", str(report_fixture.db_path)]) == 2
    assert "no run 'no-such-run'" in capsys.readouterr().err


def _exit_code(main, argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def _rated(sample, responses, task):  # type: ignore[no-untyped-def]
    """A 1-5 rating as a judge gives one: 5 for the right sum, 2 otherwise."""
    s = numeric_match()(sample, responses, task)
    return Score(s.sample_id, s.task, {"rating": 5.0 if s.values.get("exact_match") else 2.0}, s.extracted, s.parsed, s.target)


def test_ratings_on_a_1_to_5_scale_are_mapped_as_crosseval_does(tmp_path: Path) -> None:
    """A headline over 1-5 ratings uses CrossEval's (r - 1) * 24.75 + 1, not a percentage."""
    store = Store(tmp_path / "rated.db")
    task = replace(arithmetic_task(write_dataset(tmp_path), name="arith-rated"), scorer=_rated, metrics=("rating",))
    res = evaluate_tasks(ArithmeticModel("rated", 0.3), [task], store=store, progress=False)
    ratings = [r["value"] for r in store.query("SELECT value FROM scores WHERE run_id = ?", (res.run_id,))]
    expected = sum((r - 1) * 24.75 + 1 for r in ratings) / len(ratings)
    out = build_report(store, [res.run_id], tmp_path / "r.html", OPTIONS)
    page = parse(out.read_text(encoding="utf-8"))
    assert f"{expected:.1f}" in page.section_text("headline")
    # the per-task table keeps the metric's own scale
    m = res.metric("arith-rated", "rating")
    assert f"rating {m.value:.2f} [{m.ci_low:.2f}, {m.ci_high:.2f}]" in page.section_text("tasks")
    store.close()


def test_battles_from_a_csv_join_the_arena(report_fixture: ReportFixture, tmp_path: Path) -> None:
    csv_path = tmp_path / "lab-battles.csv"
    rows = ["model_a,model_b,winner"] + ["alpha,beta,model_a"] * 6 + ["beta,alpha,model_a"] * 2 + ["alpha,beta,tie"] * 2
    csv_path.write_text("\n".join(rows) + "\n")
    out = build_report(
        report_fixture.store, report_fixture.run_ids[:1], tmp_path / "b.html", ReportOptions(arena_bootstrap=50, battle_files=(csv_path,))
    )
    text = parse(out.read_text(encoding="utf-8")).section_text("arena")
    assert "lab-battles (CSV) votes: 10 battles" in text
    # alpha won 6 of the 8 decided battles: it leads the CSV's leaderboard with that record
    assert re.search(r"lab-battles \(CSV\) votes: 10 battles rank model .*? 1 alpha [\d.]+ \[[-\d.]+, [-\d.]+\] [\d.]+ 10 6 2 2", text), text


def test_bits_per_byte_runs_show_as_stored_the_lower_wins_and_no_headline(tmp_path):
    from capeval.types import MetricResult, RunResult

    db = tmp_path / "bpb.db"
    with Store(db) as store:
        run_ids = []
        for model, base in (("small", 0.80), ("big", 0.70)):
            run_id = store.start_run(model, model, ["docs"], {})
            values = [base + 0.01 * (i % 5) for i in range(30)]
            rows = [{"task": "docs", "sample_id": f"d{i}", "prompt": "", "response": [{"logprobs": [-1.0]}]} for i in range(30)]
            store.save_samples(run_id, rows, [Score(f"d{i}", "docs", {"bits_per_byte": v}) for i, v in enumerate(values)])
            mean = sum(values) / 30
            store.finish_run(RunResult(run_id, model, ("docs",), (MetricResult("docs", "bits_per_byte", mean, mean - 0.01, mean + 0.01, 30),)))
            run_ids.append(run_id)
        out = tmp_path / "bpb.html"
        build_report(store, run_ids, out, OPTIONS)
    text = " ".join(re.sub(r"<[^>]+>", " ", out.read_text()).split())
    assert "small bits_per_byte (lower is better) 0.820" in text and "big bits_per_byte (lower is better) 0.720" in text
    assert "docs (bits_per_byte (lower is better)) small big 0.100 [0.100, 0.100]" in text
    assert "big is better" in text and "small is better" not in text
    assert "no task of these runs is scored on a 0-100 scale: docs (measured in bits_per_byte" in text


def _stored_run(store: Store, model: str, task: str, scores: list[Score], metric: str) -> str:
    """A finished run of `task` with these samples; its metric as the engine aggregates them."""
    from capeval.engine import aggregate
    from capeval.types import RunResult

    run_id = store.start_run(model, model, [task], {})
    rows = [{"task": task, "sample_id": s.sample_id, "prompt": "", "response": [{"text": "x", "error": None}]} for s in scores]
    store.save_samples(run_id, rows, scores)
    answered = [s for s in scores if not s.metadata.get("call_failed")]
    metrics = aggregate(task, answered, expected=(metric,), n_failed=len(scores) - len(answered))
    store.finish_run(RunResult(run_id, model, (task,), tuple(metrics)))
    return run_id


def test_a_failed_call_is_left_out_of_the_headline_as_the_engine_leaves_it_out(tmp_path: Path) -> None:
    with Store(tmp_path / "failed.db") as store:
        scores = [Score(f"s{i}", "arith", {"acc": 1.0}) for i in range(6)]
        scores += [Score(f"s{i}", "arith", {}, None, False, None, {"call_failed": True, "error": "HTTP 503"}) for i in (6, 7)]
        run_id = _stored_run(store, "m", "arith", scores, "acc")
        out = build_report(store, [run_id], tmp_path / "f.html", OPTIONS)
    headline = parse(out.read_text(encoding="utf-8")).section_text("headline")
    # 6 answered items, all right: 100.0 (counting the 2 failed calls as wrong would say 75.0)
    assert re.search(r"\b100\.0\b", headline) and "75.0" not in headline, headline


def test_a_judge_metric_keeps_its_scale_whatever_its_values(tmp_path: Path) -> None:
    """CrossEval's score_100 of a run where every verdict was 1 is 1.0 on 1-100, not a perfect 0-1 accuracy."""
    with Store(tmp_path / "judged.db") as store:
        run_id = _stored_run(store, "m", "crosseval", [Score(f"c{i}", "crosseval", {"score_100": 1.0}) for i in range(8)], "score_100")
        out = build_report(store, [run_id], tmp_path / "j.html", OPTIONS)
    headline = parse(out.read_text(encoding="utf-8")).section_text("headline")
    assert re.search(r"\b1\.0\b", headline) and "100.0" not in headline, headline
