"""The analysis commands end to end: real SQLite stores and CSV files, `python -m capeval`."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from capeval.store import Store
from capeval.types import MetricResult, RunResult, Score

from .test_arena import synthetic_battles
from .test_contamination import JAMES, JULIE, NATALIA
from .test_weakest_link import paper_shaped_table


def capeval(*args):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "capeval", *args], capture_output=True, text=True, timeout=300, env=env, check=False)


def add_run(store: Store, model: str, task: str, correct: list[int], extra: dict | None = None) -> str:
    """A finished run whose per-item 'acc' is `correct` (first metric) plus a second metric."""
    run_id = store.start_run(model, model, [task], {})
    rows = [{"task": task, "sample_id": f"{task}-{i}", "prompt": f"Q{i}", "response": [{"text": "x"}]} for i in range(len(correct))]
    scores = [Score(f"{task}-{i}", task, {"acc": float(c), "f1": 0.5}, "x", True, "y", metadata=extra or {}) for i, c in enumerate(correct)]
    store.save_samples(run_id, rows, scores)
    store.finish_run(RunResult(run_id, model, (task,), (MetricResult(task, "acc", float(np.mean(correct)), 0, 1, len(correct)),
                                                      MetricResult(task, "f1", 0.5, 0.5, 0.5, len(correct)))))
    return run_id


@pytest.fixture
def two_runs(tmp_path):
    rng = np.random.default_rng(0)
    db = tmp_path / "runs.db"
    with Store(db) as s:
        a = add_run(s, "strong-model", "quiz", list((rng.random(300) < 0.75).astype(int)))
        b = add_run(s, "weak-model", "quiz", list((rng.random(300) < 0.55).astype(int)))
    return db, a, b


def test_compare_runs_in_store(two_runs, tmp_path):
    db, a, b = two_runs
    out = capeval("compare", a, b[:18], "--db", str(db), "--json", str(tmp_path / "c.json"), "--resamples", "4000")
    assert out.returncode == 0, out.stderr
    (c,) = json.loads((tmp_path / "c.json").read_text())["comparisons"]
    assert c["task"] == "quiz" and c["metric"] == "acc" and c["n"] == 300  # primary = first metric
    assert c["diff"] == pytest.approx(c["mean_a"] - c["mean_b"]) and c["diff"] > 0.1
    assert c["p_value"] < 0.01 and c["ci_low"] > 0
    assert 0.08 < c["mdd"] < 0.14
    assert "significant at 0.05" in out.stdout and "not significant" not in out.stdout
    assert "MDD" in out.stdout and "95% CI" in out.stdout
    out = capeval("compare", a, "nope", "--db", str(db))
    assert out.returncode == 2 and "no run 'nope'" in out.stderr


def test_headline_from_csv(tmp_path):
    path = tmp_path / "scores.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "task", "sample_id", "metric", "value"])
        for i in range(10):
            w.writerow(["m", "t1", f"a{i}", "acc", 1 if i < 8 else 0])
            w.writerow(["m", "t1", f"a{i}", "f1", 0.1])
        for i in range(20):
            w.writerow(["m", "t2", f"b{i}", "acc", 1 if i < 5 else 0])
    out = capeval("headline", "m", "--csv", str(path), "--json", str(tmp_path / "h.json"))
    assert out.returncode == 0, out.stderr
    h = json.loads((tmp_path / "h.json").read_text())["m"]
    assert h["value"] == pytest.approx((0.8 + 0.25) / 2)
    assert h["metrics"] == {"t1": "acc", "t2": "acc"} and h["n_items"] == 30
    assert h["ci_low"] < h["value"] < h["ci_high"]
    out = capeval("headline", "m", "--csv", str(path), "--primary", "t1=f1", "--json", str(tmp_path / "h2.json"))
    assert out.returncode == 0, out.stderr
    h2 = json.loads((tmp_path / "h2.json").read_text())["m"]
    assert h2["metrics"]["t1"] == "f1" and h2["value"] == pytest.approx((0.1 + 0.25) / 2)


def test_bits_per_byte_lower_wins_and_stays_out_of_the_headline(tmp_path):
    path = tmp_path / "scores.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "task", "sample_id", "metric", "value"])
        for i in range(30):
            w.writerow(["small", "code", f"c{i}", "bits_per_byte", 0.60 + 0.01 * (i % 7)])
            w.writerow(["big", "code", f"c{i}", "bits_per_byte", 0.50 + 0.01 * (i % 5)])
            w.writerow(["small", "quiz", f"q{i}", "acc", 1 if i < 12 else 0])
            w.writerow(["big", "quiz", f"q{i}", "acc", 1 if i < 15 else 0])
    out = capeval("compare", "small", "big", "--csv", str(path), "--task", "code", "--json", str(tmp_path / "c.json"))
    assert out.returncode == 0, out.stderr
    (c,) = json.loads((tmp_path / "c.json").read_text())["comparisons"]
    assert c["metric"] == "bits_per_byte" and c["diff"] > 0 and c["p_value"] < 0.01
    text = " ".join(out.stdout.split())
    assert "bits_per_byte (lower is better)" in text
    assert "B (big) is better (lower bits_per_byte)" in text
    out = capeval("headline", "small", "big", "--csv", str(path), "--json", str(tmp_path / "h.json"))
    assert out.returncode == 0, out.stderr
    h = json.loads((tmp_path / "h.json").read_text())
    assert h["small"]["metrics"] == {"quiz": "acc"} and h["small"]["value"] == pytest.approx(0.4)
    assert h["big"]["value"] == pytest.approx(0.5) and h["big"]["n_items"] == 30
    assert "left out code: bits_per_byte is better when lower" in " ".join(out.stdout.split())


def test_weakest_link_from_capability_csv(tmp_path):
    path = tmp_path / "caps.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "capability", "score"])
        for model, caps in paper_shaped_table().items():
            for cap, score in caps.items():
                w.writerow([model, cap, score])
    out = capeval("weakest-link", "--csv", str(path), "--json", str(tmp_path / "w.json"))
    assert out.returncode == 0, out.stderr
    res = json.loads((tmp_path / "w.json").read_text())
    assert res["counts"] == {"below_both": 38, "closer_to_weaker": 20, "closer_to_stronger": 0, "above_both": 0}
    assert len(res["cases"]) == 58 and all(c["position"] < 0.5 for c in res["cases"])
    assert res["positions"] == [c["position"] for c in res["cases"]]
    assert "58 cases" in out.stdout and "below both" in out.stdout
    out = capeval("weakest-link", "--csv", str(path), "--threshold", "20", "--json", str(tmp_path / "w2.json"))
    assert out.returncode == 0 and json.loads((tmp_path / "w2.json").read_text())["cases"] == []
    assert capeval("weakest-link").returncode == 2


def test_weakest_link_from_runs_with_capability_metadata(tmp_path):
    # judge ratings 1-5 per item, capability in the sample metadata (CrossEval's layout)
    db = tmp_path / "x.db"
    with Store(db) as s:
        run_id = s.start_run("m", "m", ["crosseval"], {})
        plan = {"Coding": [5, 5], "Reasoning": [3, 3], "Coding & Reasoning": [2, 2]}
        rows, scores = [], []
        for cap, ratings in plan.items():
            for k, r in enumerate(ratings):
                sid = f"{cap}-{k}"
                rows.append({"task": "crosseval", "sample_id": sid, "prompt": "p", "response": [{"text": "t"}]})
                scores.append(Score(sid, "crosseval", {"rating": float(r)}, metadata={"capability": cap}))
        s.save_samples(run_id, rows, scores)
    out = capeval("weakest-link", "--run", run_id, "--db", str(db), "--json", str(tmp_path / "w.json"))
    assert out.returncode == 0, out.stderr
    (case,) = json.loads((tmp_path / "w.json").read_text())["cases"]
    # 1-5 ratings on CrossEval's 1-100 scale: (r - 1) * 24.75 + 1
    assert (case["weaker_score"], case["stronger_score"], case["cross_score"]) == (50.5, 100.0, 25.75)
    assert case["category"] == "below_both"


def test_arena_from_csv_and_from_store(tmp_path):
    rows = synthetic_battles(1500, seed=2)
    path = tmp_path / "battles.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["model_a", "model_b", "winner"])
        w.writeheader()
        w.writerows(rows)
    out = capeval("arena", "--csv", str(path), "--bootstrap", "100", "--seed", "3", "--json", str(tmp_path / "a.json"))
    assert out.returncode == 0, out.stderr
    lb = json.loads((tmp_path / "a.json").read_text())
    assert lb["n_battles"] == 1500 and lb["n_bootstrap"] == 100
    assert lb["ratings"][0]["model"] == "alpha" and lb["ratings"][-1]["model"] == "foxtrot"
    assert "95% CI" in out.stdout and "online Elo" in out.stdout
    db = tmp_path / "votes.db"
    with Store(db) as s:
        s.conn.executemany(
            "INSERT INTO pairwise_votes (source, model_a, model_b, winner, created_at) VALUES ('human', ?, ?, ?, ?)",
            [(r["model_a"], r["model_b"], r["winner"], float(i)) for i, r in enumerate(rows)],
        )
        s.conn.commit()
    out = capeval("arena", "--db", str(db), "--bootstrap", "100", "--seed", "3", "--json", str(tmp_path / "b.json"))
    assert out.returncode == 0, out.stderr
    from_db = json.loads((tmp_path / "b.json").read_text())
    assert [r["rating"] for r in from_db["ratings"]] == pytest.approx([r["rating"] for r in lb["ratings"]])
    bad = tmp_path / "bad.csv"
    bad.write_text("model_a,model_b,result\na,b,model_a\n")
    out = capeval("arena", "--csv", str(bad))
    assert out.returncode == 2 and "lacks columns winner" in out.stderr


def test_contamination_gap_perturb_and_ngram(tmp_path, two_runs):
    db, a, b = two_runs
    out = capeval("contamination", "gap", "--public", a, "--private", b, "--db", str(db), "--json", str(tmp_path / "g.json"))
    assert out.returncode == 0, out.stderr
    g = json.loads((tmp_path / "g.json").read_text())
    assert g["flagged"] and g["gap"] > 0.1 and "FLAGGED" in out.stdout

    data = tmp_path / "gsm.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in (NATALIA, JULIE, JAMES)))
    variants = tmp_path / "variants.jsonl"
    out = capeval("contamination", "perturb", "--data", str(data), "--out", str(variants), "--variants", "2")
    assert out.returncode == 0, out.stderr
    assert "perturbed 2 of 3 items (66.7%)" in out.stdout
    rows = [json.loads(x) for x in variants.read_text().splitlines()]
    assert len(rows) == 4 and all(r["answer"].endswith("#### " + r["final_answer"]) for r in rows)

    # the variants as the private split, each paired with its original item for the drop
    with Store(db) as s:
        orig = s.start_run("m", "m", ["gsm8k"], {})
        s.save_samples(orig, [{"task": "gsm8k", "sample_id": str(i), "prompt": "q"} for i in range(3)],
                       [Score(str(i), "gsm8k", {"exact_match": 1.0}) for i in range(3)])
        var = s.start_run("m", "m", ["gsm8k"], {})
        s.save_samples(var, [{"task": "gsm8k", "sample_id": str(i), "prompt": "q"} for i in range(4)],
                       [Score(str(i), "gsm8k", {"exact_match": float(i == 0)}) for i in range(4)])
    out = capeval("contamination", "gap", "--public", orig, "--private", var, "--variants", str(variants),
                  "--db", str(db), "--json", str(tmp_path / "d.json"))
    assert out.returncode == 0, out.stderr
    drop = json.loads((tmp_path / "d.json").read_text())["paired_drop"]
    # originals "0" and "1" (Natalia, Julie) each have 2 variants; only variant row 0 was solved
    assert drop["n"] == 2 and drop["diff"] == pytest.approx(1 - 0.25)
    assert "paired drop" in out.stdout

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("filler words\n" * 20 + JULIE["question"] + "\n")
    out = capeval("contamination", "ngram", "--task", "gsm8k", "--data", str(data), "--corpus", str(corpus),
                  "--flag-ratio", "0.3", "--json", str(tmp_path / "n.json"))
    assert out.returncode == 0, out.stderr
    items = json.loads((tmp_path / "n.json").read_text())["items"]
    # the corpus holds Julie's question but not her worked solution: about half the item leaked
    flagged = [i for i in items if i["flagged"]]
    assert len(flagged) == 1 and 0.3 <= flagged[0]["ratio"] < 1.0
    assert all(i["n_matched"] == 0 for i in items if not i["flagged"])
    assert "items flagged" in out.stdout


def test_headline_puts_tasks_on_different_scales_on_1_to_100_first(tmp_path):
    path = tmp_path / "mixed.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "task", "sample_id", "metric", "value"])
        for i in range(10):
            w.writerow(["m", "crosseval", f"c{i}", "score_100", 50.5])  # CrossEval's 1-100 judge score
            w.writerow(["m", "mmlu", f"q{i}", "acc", 1 if i < 6 else 0])
    out = capeval("headline", "m", "--csv", str(path), "--json", str(tmp_path / "h.json"))
    assert out.returncode == 0, out.stderr
    h = json.loads((tmp_path / "h.json").read_text())["m"]
    # (50.5 + 60) / 2 on 1-100, not (50.5 + 0.6) / 2 of the raw values
    assert h["value"] == pytest.approx((50.5 + 60.0) / 2) and h["scale"] == "1-100"
    assert "different scales" in " ".join(out.stdout.split())
