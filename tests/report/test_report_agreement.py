"""The report's agreement-between-annotators section: the numbers of capeval.analysis.agreement over the stored ratings."""

from __future__ import annotations

import re
from pathlib import Path

from report_fixtures import ArithmeticModel, ReportFixture, arithmetic_task, write_dataset
from test_report_html import OPTIONS, parse

from capeval.analysis.agreement import rating_agreement
from capeval.engine import evaluate_tasks
from capeval.report.builder import build_report
from capeval.store import Store
from capeval.web.auth import add_annotator


def test_agreement_section_shows_alpha_and_kappa_of_the_shared_ratings(tmp_path: Path) -> None:
    store = Store(tmp_path / "rated.db")
    task = arithmetic_task(write_dataset(tmp_path))
    run = evaluate_tasks(ArithmeticModel("rated", 0.3), [task], store=store, progress=False).run_id
    other = evaluate_tasks(ArithmeticModel("not-reported", 0.3), [task], store=store, progress=False).run_id
    samples = [(s["task"], s["sample_id"]) for s in store.iter_samples(run)][:12]
    people = {name: add_annotator(store, name)[0].annotator_id for name in ("Ada", "Grace", "Linus")}
    # Ada rates all 12, Grace agrees on most of the first 8, Linus rates 4 of them, one step off
    for i, (t, sid) in enumerate(samples):
        truth = 1 + i % 5
        store.add_human_rating(people["Ada"], run, t, sid, "rated", truth, "x")
        if i < 8:
            store.add_human_rating(people["Grace"], run, t, sid, "rated", truth if i % 4 else min(5, truth + 1), "x")
        if i % 2 == 0 and i < 8:
            store.add_human_rating(people["Linus"], run, t, sid, "rated", max(1, truth - 1), "x")
        # ratings of a run the report does not show, and one without an annotator, stay out
        store.add_human_rating(people["Linus"], other, t, sid, "not-reported", 5, "x")
    store.execute("INSERT INTO human_ratings (run_id, task, sample_id, rating, created_at) VALUES (?,?,?,?,0)", (run, *samples[0], 1))

    html = build_report(store, [run], tmp_path / "r.html", OPTIONS).read_text(encoding="utf-8")
    text = parse(html).section_text("annotator-agreement")
    rows = store.query(
        "SELECT h.task, h.sample_id, a.name, h.rating FROM human_ratings h JOIN annotators a USING (annotator_id) WHERE h.run_id = ?",
        (run,),
    )
    expected = rating_agreement(((r["task"], r["sample_id"]), r["name"], r["rating"]) for r in rows)
    assert (expected.n_items, expected.n_ratings, expected.n_annotators) == (8, 20, 3)
    assert re.search(rf"ordinal {expected.alpha_ordinal:.3f} 8 20 3", text), text
    assert re.search(rf"interval {expected.alpha_interval:.3f} 8 20 3", text), text
    for p in expected.pairs:
        assert f"{p.annotator_a} {p.annotator_b} {p.n_items} {p.kappa:.3f} {p.kappa_quadratic:.3f}" in text, text
    assert [(p.annotator_a, p.annotator_b, p.n_items) for p in expected.pairs] == [("Ada", "Grace", 8), ("Ada", "Linus", 4), ("Grace", "Linus", 4)]
    assert '<a href="#annotator-agreement">' in html
    store.close()


def test_agreement_section_says_what_is_missing(report_fixture: ReportFixture, tmp_path: Path) -> None:
    # the shared fixture's ratings alternate between two annotators: no response has two
    html = build_report(report_fixture.store, report_fixture.run_ids[:1], tmp_path / "r.html", OPTIONS).read_text(encoding="utf-8")
    text = parse(html).section_text("annotator-agreement")
    assert "Not shown: no response of these runs was rated by more than one annotator" in text
    assert "capeval annotate" in text
