"""Score tables from the store and from CSV files: metric order, capabilities, scales, errors."""

from __future__ import annotations

import pytest

from capeval.analysis.tables import (
    TableError,
    capability_scores,
    load_run_scores,
    read_battles_csv,
    read_capability_csv,
    read_scores_csv,
    scores_to_100,
)
from capeval.store import Store
from capeval.types import MetricResult, RunResult, Score


def test_run_scores_keep_the_tasks_metric_order(tmp_path):
    with Store(tmp_path / "s.db") as s:
        rid = s.start_run("m", "spec-m", ["drop"], {})
        # scores written f1 first, but the run's results list em first: em is the primary metric
        s.save_samples(rid, [{"task": "drop", "sample_id": "a", "prompt": "p"}], [Score("a", "drop", {"f1": 0.5, "em": 0.0})])
        s.finish_run(RunResult(rid, "spec-m", ("drop",), (MetricResult("drop", "em", 0, 0, 0, 1), MetricResult("drop", "f1", 0.5, 0.5, 0.5, 1))))
        rs = load_run_scores(s, rid[:16])
        assert rs.name == rid and rs.model == "spec-m"
        assert rs.metrics == {"drop": ["em", "f1"]} and rs.primary("drop") == "em"
        assert rs.per_item("drop") == {"a": 0.0} and rs.per_item("drop", "f1") == {"a": 0.5}
        with pytest.raises(TableError, match="no run 'zzz'"):
            load_run_scores(s, "zzz")
        with pytest.raises(TableError, match="has no scores for task 'mmlu'"):
            rs.per_item("mmlu")


def test_capability_from_task_tags_and_scale(tmp_path):
    with Store(tmp_path / "s.db") as s:
        rid = s.start_run("m", "m", ["humaneval", "gsm8k"], {})
        s.save_samples(
            rid,
            [{"task": t, "sample_id": str(i), "prompt": "p"} for t in ("humaneval", "gsm8k") for i in range(4)],
            [Score(str(i), t, {"pass@1" if t == "humaneval" else "exact_match": float(i < 3)}) for t in ("humaneval", "gsm8k") for i in range(4)],
        )
        caps = capability_scores([load_run_scores(s, rid)])
    # humaneval has the single tag Coding; gsm8k has two tags, so it stands as itself
    assert caps == {"m": {"Coding": 75.0, "gsm8k": 75.0}}


def test_scores_to_100_scales():
    assert scores_to_100([0.0, 1.0]) == [0.0, 100.0]
    assert scores_to_100([1.0, 5.0, 3.0]) == [1.0, 100.0, 50.5]  # CrossEval: (r - 1) * 24.75 + 1
    assert scores_to_100([30.0, 80.0]) == [30.0, 80.0]
    assert scores_to_100([1.0], "1-100") == [1.0]


def test_csv_readers(tmp_path):
    caps = tmp_path / "caps.csv"
    caps.write_text("model,capability,score\nm,Coding,70\nm,Reasoning,60\nm,Coding & Reasoning,50\n")
    assert read_capability_csv(caps) == {"m": {"Coding": 70.0, "Reasoning": 60.0, "Coding & Reasoning": 50.0}}
    items = tmp_path / "items.csv"
    items.write_text("model,task,sample_id,metric,value,capability\nm,t,1,acc,1,Coding\nm,t,2,acc,0,Coding\nm,t,3,acc,1,Reasoning\n")
    assert read_capability_csv(items) == {"m": {"Coding": 50.0, "Reasoning": 100.0}}
    assert read_scores_csv(items)["m"].per_item("t") == {"1": 1.0, "2": 0.0, "3": 1.0}
    bad = tmp_path / "bad.csv"
    bad.write_text("model,task,value\nm,t,1\n")
    with pytest.raises(TableError, match="lacks columns metric, sample_id"):
        read_scores_csv(bad)
    nonnum = tmp_path / "nonnum.csv"
    nonnum.write_text("model,task,sample_id,metric,value\nm,t,1,acc,high\n")
    with pytest.raises(TableError, match="line 2: value 'high' is not a number"):
        read_scores_csv(nonnum)
    battles = tmp_path / "b.csv"
    battles.write_text("model_a,model_b,winner\nx,y,tie (bothbad)\n")
    assert read_battles_csv(battles)[0].winner == "tie (bothbad)"
    with pytest.raises(TableError, match="CSV file not found"):
        read_battles_csv(tmp_path / "none.csv")
