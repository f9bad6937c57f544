"""`capeval run` with no arguments: the default job (both bundled models, one stratified sample,
a paired test, the HTML report)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from capeval.analysis.stats import compare_paired
from capeval.first_run import DEFAULT_JOB, better_model, side_by_side
from capeval.types import MetricResult, RunResult


def capeval(*args: str, timeout: int = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "capeval", *args], capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_flags_of_a_single_run_are_refused_without_model_or_tasks(tmp_path):
    out = capeval("run", "--chat", "--limit", "5", "--db", str(tmp_path / "x.db"))
    assert out.returncode == 2
    assert out.stderr.splitlines()[0] == (
        "error: --limit, --chat need --model or --tasks (with neither, capeval runs its default job)"
    )
    assert not (tmp_path / "x.db").exists()


def test_side_by_side_puts_each_models_value_and_ci_in_its_column():
    def result(model: str, value: float) -> RunResult:
        return RunResult(
            "r-" + model, model, ("t",),
            (MetricResult("t", "acc", value, value - 0.1, value + 0.1, 40, subset="sample 40/80"),
             MetricResult("t/g1", "acc", 1.0, 1.0, 1.0, 5)),
        )

    table = side_by_side([result("small", 0.25), result("big", 0.5)])
    cols = [c.header for c in table.columns]
    assert cols[2].startswith("small") and cols[3].startswith("big")
    assert table.row_count == 1  # the per-group row stays in each run's own table
    cells = [list(c.cells) for c in table.columns]
    assert cells[2] == ["0.250 [0.150, 0.350]"] and cells[3] == ["0.500 [0.400, 0.600]"]
    assert cells[4] == ["40"] and cells[5] == ["sample 40/80"]


def test_the_better_model_has_fewer_bits_per_byte_or_more_accuracy():
    ids = [f"q{i}" for i in range(30)]
    small = {i: 1.0 + 0.01 * (k % 7) for k, i in enumerate(ids)}
    big = {i: v - 0.05 - 0.002 * (k % 3) for k, (i, v) in enumerate(small.items())}
    bpb = compare_paired(big, small, metric="bits_per_byte", n_resamples=2000)
    assert bpb.diff < 0 and bpb.significant
    assert better_model(bpb, "big", "small") == "big"
    acc = compare_paired(big, small, metric="acc", n_resamples=2000)
    assert better_model(acc, "big", "small") == "small"
    same = compare_paired(small, dict(small), metric="bits_per_byte", n_resamples=2000)
    assert better_model(same, "big", "small") is None


@pytest.mark.slow
def test_default_job_end_to_end(tmp_path):
    db, out_json = tmp_path / "first.db", tmp_path / "first.json"
    out = capeval("run", "--sample", "8", "--db", str(db), "--json", str(out_json), "--no-progress")
    assert out.returncode == 0, out.stderr
    res = json.loads(out_json.read_text())
    runs = res["runs"]
    assert [r["model"] for r in runs] == list(DEFAULT_JOB.models)
    # the same stratified sample for both models
    subsets = [r["config"]["subsets"] for r in runs]
    assert subsets[0] == subsets[1]
    for t in DEFAULT_JOB.tasks:
        assert subsets[0][t]["n"] == 8 and subsets[0][t]["selection"] == "sample"
    assert [c["task"] for c in res["comparisons"]] == list(DEFAULT_JOB.tasks)  # one paired test per task
    (c, *_) = res["comparisons"]
    assert c["n"] == 8 and 0 < c["p_value"] <= 1
    assert c["task"] == "mtbench-bpb" and c["metric"] == "bits_per_byte"
    # the paired test is gemma - smollm2 on bits per byte: the better model is the one with fewer
    if c["p_value"] < 0.05:
        assert c["better"] == (runs[1]["model"] if c["diff"] < 0 else runs[0]["model"])
    else:
        assert c["better"] is None
    text = " ".join(out.stdout.split())
    assert f"paired test on {c['task']} (bits_per_byte (lower is better)" in text and f"p = {c['p_value']:.4f}" in text
    assert (f"{c['better']} is better" in text) == (c["better"] is not None)
    report = Path(res["report"])
    assert report.is_file() and f"report: {report}" in text
    html = report.read_text()
    assert all(m in html for m in DEFAULT_JOB.models) and "sample 8/" in html
