"""The report of a real model's run: the bundled SmolLM2's own outputs, traced to their samples."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from markupsafe import escape
from report_fixtures import arithmetic_task, write_dataset

from capeval.engine import evaluate_tasks
from capeval.prompting import PromptConfig
from capeval.report.builder import ReportOptions, build_report
from capeval.report.data import sample_anchor
from capeval.store import Store
from capeval.types import GenerationParams


@pytest.mark.slow
def test_report_of_a_smollm2_run_shows_its_outputs(smollm2, tmp_path: Path) -> None:
    # 4 items and 8 new tokens: enough for a real answer to read, quick on 2 CPU cores
    task = replace(arithmetic_task(write_dataset(tmp_path)), generation=GenerationParams(max_tokens=8))
    with Store(tmp_path / "capeval.db") as store:
        res = evaluate_tasks(smollm2, [task], PromptConfig(chat=True), store=store, limit=4, progress=False)
        out = build_report(store, [res.run_id], tmp_path / "report.html", ReportOptions())
        samples = list(store.iter_samples(res.run_id))
    page = out.read_text(encoding="utf-8")
    m = res.metric("arith", "exact_match")
    assert f"{m.value * 100:.1f}" in page and str(escape(res.model)) in page
    assert len(samples) == 4
    for s in samples:
        # each output appears verbatim (HTML-escaped as Jinja does) in the sample's own article
        start = page.index(f'<article class="sample" id="{sample_anchor(res.run_id, s["task"], s["sample_id"])}">')
        article = page[start : page.index("</article>", start)]
        assert str(escape(s["response"][0]["text"])) in article
        assert s["extracted"] is None or str(escape(s["extracted"])) in article
