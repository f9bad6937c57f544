"""`capeval run --sample / --limit` on a category-sorted task, then `compare`, `headline` and `report`
on those runs: two scripted models on an OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from scripted_chat import ScriptedChatServer

# 3 categories x 8 items, stored sorted by category (as MT-Bench stores its questions)
CATEGORIES = ("animal", "plant", "mineral")
SPEC = """\
name: sorted-kinds
source: {local: items.jsonl}
split: test
output_type: generate
question: "What kind of thing is {{ thing }}?"
target: "{{ kind }}"
answer_prefix: "Answer:"
scorer: exact_match
metrics: [exact_match]
metadata: {kind: "{{ kind }}"}
strata: kind
"""


def capeval(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "capeval", *args], capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "COLUMNS": "200"},  # one table row per line
    )


def rule(model: str, messages: list[dict[str, str]]) -> str:
    # "knower" knows every kind; "guesser" always says animal (right on the first 8 items only)
    thing = messages[-1]["content"].split("What kind of thing is ")[-1].split("?")[0]
    return thing.split("-")[0] if model == "knower" else "animal"


@pytest.fixture
def task_dir(tmp_path):
    d = tmp_path / "tasks"
    d.mkdir()
    (d / "items.jsonl").write_text(
        "".join(json.dumps({"thing": f"{c}-{i}", "kind": c}) + "\n" for c in CATEGORIES for i in range(8))
    )
    (d / "sorted_kinds.yaml").write_text(SPEC)
    return d


def test_sample_limit_and_comparisons_on_subsets(tmp_path, task_dir):
    db = str(tmp_path / "runs.db")
    with ScriptedChatServer(rule) as srv:

        def run(model: str, *flags: str) -> tuple[subprocess.CompletedProcess[str], dict]:
            out_json = tmp_path / f"{model}{'-'.join(flags)}.json"
            out = capeval(
                "run", "--model", f"openai:{model}@{srv.base_url}", "--tasks", "sorted-kinds", "--include-path",
                str(task_dir), "--db", db, "--json", str(out_json), "--no-progress", "-o", "max_retries=0", *flags,
            )
            assert out.returncode == 0, out.stderr
            return out, json.loads(out_json.read_text())

        # --limit keeps its lm-eval meaning (first N) and says what those items leave out
        out, limited = run("guesser", "--limit", "6")
        text = " ".join(out.stdout.split())
        assert "--limit 6 takes the first 6 items, which cover 1 of its 3 kind values (animal)" in text
        assert "--sample 6 draws a seeded sample stratified by kind" in text
        assert limited["metrics"][0]["value"] == 1.0 and limited["metrics"][0]["subset"] == "first 6/24"

        # --sample: 2 of each kind, the same items for both models, recorded and shown
        out_g, guess = run("guesser", "--sample", "6", "--seed", "7")
        _, know = run("knower", "--sample", "6", "--seed", "7")
    for res in (guess, know):
        sub = res["config"]["subsets"]["sorted-kinds"]
        assert (sub["selection"], sub["n"], sub["total"], sub["seed"]) == ("sample", 6, 24, 7)
        assert sub["per_stratum"] == {c: [2, 8] for c in CATEGORIES}
        assert res["metrics"][0]["subset"] == "sample 6/24"
    assert guess["metrics"][0]["value"] == pytest.approx(2 / 6)  # animal items only
    assert know["metrics"][0]["value"] == 1.0
    assert "sample 6/24" in out_g.stdout and "items" in out_g.stdout
    assert "stratified sample: 6 of 24 items (all 3 kind values, seed 7)" in " ".join(out_g.stdout.split())

    # the same sample: compare pairs all 6 items
    out = capeval("compare", know["run_id"], guess["run_id"], "--db", db, "--json", str(tmp_path / "c.json"))
    assert out.returncode == 0, out.stderr
    (c,) = json.loads((tmp_path / "c.json").read_text())["comparisons"]
    assert c["n"] == 6 and c["diff"] == pytest.approx(4 / 6)

    # a sample against a first-N run: refused in one line, unless told
    for cmd in (["compare", know["run_id"], limited["run_id"]], ["headline", know["run_id"], limited["run_id"]]):
        out = capeval(*cmd, "--db", db)
        assert out.returncode == 2
        first = out.stderr.strip().splitlines()[0]
        assert first.startswith("error: runs evaluated different items of sorted-kinds (")
        assert "stratified sample: 6 of 24 items" in out.stderr and "first items (--limit): 6 of 24 items" in out.stderr
        assert "--allow-different-subsets" in out.stderr
        assert capeval(*cmd, "--db", db, "--allow-different-subsets").returncode == 0

    # the report says which items each number comes from
    html_path = tmp_path / "r.html"
    out = capeval("report", know["run_id"], guess["run_id"], "--db", db, "--out", str(html_path))
    assert out.returncode == 0, out.stderr
    html = html_path.read_text()
    assert "sample 6/24" in html
    assert "sorted-kinds was evaluated on a stratified sample: 6 of 24 items (all 3 kind values, seed 7)" in html
