"""The cache knows which model answered: a model folder's fingerprint (weights, config, tokenizer,
chat template), GGUF files, and hub snapshot commits are part of the model id."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from capeval.engine import evaluate_tasks
from capeval.models import fingerprint, load_model
from capeval.prompting import PromptConfig
from capeval.store import Store
from capeval.tasks import get_task
from tiny_model import build_tiny_llama, zero_output_and_embeddings


@pytest.fixture(autouse=True)
def own_cache_dir(tmp_path, monkeypatch):
    """Content hashes are remembered in capeval's cache dir: a fresh one per test."""
    monkeypatch.setenv("CAPEVAL_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_template(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def tiny(tiny_template, tmp_path) -> Path:
    """A fresh copy of the tiny model folder, free to edit."""
    return Path(shutil.copytree(tiny_template, tmp_path / "ckpt"))


def run_once(folder: Path, store: Store, chat: bool = False):
    model = load_model(f"hf:{folder}")
    task = get_task("mtbench-category")
    return evaluate_tasks(
        model, [task], PromptConfig(chat=chat), store=store, limit=6, model_spec=f"hf:{folder}", progress=False
    )


def sample_logprobs(store: Store, run_id: str) -> list[list[float]]:
    return [s["response"][0]["logprobs"] for s in store.iter_samples(run_id)]


def capeval_run(folder: Path, db: Path, cwd: Path) -> tuple[dict, str]:
    out_json = cwd / f"result-{len(list(cwd.glob('result-*.json')))}.json"
    proc = subprocess.run(
        [sys.executable, "-m", "capeval", "run", "--model", f"hf:{folder}", "--tasks", "mtbench-category",
         "--limit", "8", "--db", str(db), "--json", str(out_json), "--no-progress"],
        check=False, capture_output=True, text=True, timeout=300, cwd=cwd, env={**os.environ, "COLUMNS": "250"},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(out_json.read_text()), proc.stdout + proc.stderr


# ---- the user's scenario, through the command line ------------------------------------------------
def test_weights_replaced_in_place_are_answered_again_with_the_new_score(tiny, tmp_path):
    db = tmp_path / "runs.db"
    first, _ = capeval_run(tiny, db, tmp_path)
    assert (first["n_calls_cached"], first["n_calls_new"]) == (0, 8)
    again, out = capeval_run(tiny, db, tmp_path)
    assert (again["n_calls_cached"], again["n_calls_new"]) == (8, 0)
    assert "changed since" not in out
    zero_output_and_embeddings(tiny)  # every logit equal: every letter ties, argmax picks A
    new, out = capeval_run(tiny, db, tmp_path)
    assert (new["n_calls_cached"], new["n_calls_new"]) == (0, 8)
    assert f"the model at {tiny.resolve()} changed since run {again['run_id']} (model.safetensors differs): answers are not reused" in " ".join(out.split())
    acc = {r["run_id"]: next(m["value"] for m in r["metrics"] if m["metric"] == "acc") for r in (first, new)}
    # the first 8 MT-Bench questions are writing (A): the tied model gets all of them; the random one does not
    assert acc[new["run_id"]] == 1.0 and acc[first["run_id"]] < 1.0
    with Store(db) as store:
        assert all(len(set(lp)) == 1 for lp in sample_logprobs(store, new["run_id"]))
        assert not any(len(set(lp)) == 1 for lp in sample_logprobs(store, first["run_id"]))
        ids = {r["run_id"]: (r["model_id"], r["model_spec"]) for r in store.runs()}
    assert ids[first["run_id"]][1] == ids[new["run_id"]][1] == f"hf:{tiny}"  # the spec as given
    assert ids[first["run_id"]][0] != ids[new["run_id"]][0]
    assert new["config"]["model_identity"]["fingerprint"] != first["config"]["model_identity"]["fingerprint"]
    show = subprocess.run(
        [sys.executable, "-m", "capeval", "runs", "show", new["run_id"], "--db", str(db), "--samples", "0"],
        check=False, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "250"},
    )
    fp = new["config"]["model_identity"]["fingerprint"]
    assert f"model id: hf:{tiny.resolve()}#{fp}|float32" in show.stdout, show.stdout + show.stderr


# ---- every file that changes outputs -------------------------------------------------------------
def test_unchanged_folder_reuses_every_answer_even_after_touch(tiny, store):
    first = run_once(tiny, store)
    for f in tiny.iterdir():
        os.utime(f)  # new mtimes, same bytes: hashed again, same fingerprint
    again = run_once(tiny, store)
    assert (first.n_calls_new, again.n_calls_cached, again.n_calls_new) == (6, 6, 0)
    assert not any("changed since" in w for w in again.warnings)


def test_edited_config_gives_new_calls_and_new_answers(tiny, store):
    first = run_once(tiny, store)
    config = json.loads((tiny / "config.json").read_text())
    config["rms_norm_eps"] = 0.5
    (tiny / "config.json").write_text(json.dumps(config))
    second = run_once(tiny, store)
    assert (second.n_calls_cached, second.n_calls_new) == (0, 6)
    assert f"changed since run {first.run_id} (config.json differs)" in " ".join(second.warnings)
    assert sample_logprobs(store, first.run_id) != sample_logprobs(store, second.run_id)


def test_edited_chat_template_gives_new_calls_and_new_answers(tiny, store):
    first = run_once(tiny, store, chat=True)
    template = tiny / "chat_template.jinja"
    template.write_text(template.read_text().replace("<|{{ m['role'] }}|>", "### {{ m['role'] }}: "))
    second = run_once(tiny, store, chat=True)
    assert (second.n_calls_cached, second.n_calls_new) == (0, 6)
    assert "(chat_template.jinja differs)" in " ".join(second.warnings)
    assert sample_logprobs(store, first.run_id) != sample_logprobs(store, second.run_id)


def test_edited_tokenizer_gives_new_calls_and_new_answers(tiny, store):
    first = run_once(tiny, store)
    spec = json.loads((tiny / "tokenizer.json").read_text())
    spec["model"]["merges"] = spec["model"]["merges"][: len(spec["model"]["merges"]) // 2]  # coarser tokens
    (tiny / "tokenizer.json").write_text(json.dumps(spec))
    second = run_once(tiny, store)
    assert (second.n_calls_cached, second.n_calls_new) == (0, 6)
    assert "(tokenizer.json differs)" in " ".join(second.warnings)
    assert sample_logprobs(store, first.run_id) != sample_logprobs(store, second.run_id)


def test_files_that_do_not_change_outputs_keep_the_fingerprint(tiny):
    before = fingerprint.local_identity(tiny)
    (tiny / "README.md").write_text("# notes")
    (tiny / "trainer_state.json").write_text("{}")
    (tiny / "optimizer.pt").write_bytes(b"\0" * 64)
    assert fingerprint.local_identity(tiny).version == before.version
    assert set(before.files) == {
        "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json",
    }


# ---- the memo of content hashes -------------------------------------------------------------------
def test_content_hash_is_computed_once_and_never_reused_for_a_changed_file(tmp_path, monkeypatch):
    monkeypatch.setattr(fingerprint, "_ALWAYS_HASH_BYTES", 0)  # memoise even small files
    memo = fingerprint.HashMemo(tmp_path / "memo.sqlite")
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    first = memo.content_hash(weights)
    assert memo.content_hash(weights) == first and memo.hashed == 1  # the repeat is a lookup
    st = weights.stat()
    with weights.open("r+b") as fh:  # same size, rewritten in place, mtime put back
        fh.seek(100)
        fh.write(b"\xff")
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights.stat().st_size == st.st_size and weights.stat().st_mtime_ns == st.st_mtime_ns
    changed = memo.content_hash(weights)  # the inode's ctime moved: hashed again
    assert changed != first and memo.hashed == 2
    # a fresh process (a new memo over the same file) finds the remembered hash
    assert fingerprint.HashMemo(tmp_path / "memo.sqlite").content_hash(weights) == changed


def test_gguf_identity_follows_the_file_not_its_folder(tmp_path):
    gguf = tmp_path / "model-Q4.gguf"
    gguf.write_bytes(b"GGUF" + b"\1" * 1000)
    before = fingerprint.local_identity(tmp_path, "model-Q4.gguf")
    assert before.name == str(gguf.resolve()) and set(before.files) == {"model-Q4.gguf"}
    (tmp_path / "other.gguf").write_bytes(b"GGUF" + b"\2" * 10)
    assert fingerprint.local_identity(tmp_path, "model-Q4.gguf").version == before.version
    gguf.write_bytes(b"GGUF" + b"\3" * 1000)
    assert fingerprint.local_identity(tmp_path, "model-Q4.gguf").version != before.version


# ---- hub ids: the snapshot's commit ---------------------------------------------------------------
def _hub_snapshot(cache: Path, repo: str, commit: str, model: Path) -> None:
    root = cache / ("models--" + repo.replace("/", "--"))
    shutil.copytree(model, root / "snapshots" / commit)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)


def test_hub_id_is_named_by_its_snapshot_commit_and_a_moved_revision_is_answered_again(tiny, tmp_path, monkeypatch, store):
    from huggingface_hub import constants

    hub = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    old, new = "a" * 40, "b" * 40
    _hub_snapshot(hub, "org/tiny", old, tiny)
    task = get_task("mtbench-category")
    model = load_model("hf:org/tiny")
    assert model.model_id == f"hf:org/tiny@{old}|float32"
    first = evaluate_tasks(model, [task], store=store, limit=4, model_spec="hf:org/tiny", progress=False)
    assert first.config["model_identity"]["revision"] == old
    again = evaluate_tasks(load_model("hf:org/tiny"), [task], store=store, limit=4, model_spec="hf:org/tiny", progress=False)
    assert again.n_calls_cached == 4 and again.n_calls_new == 0
    zero_output_and_embeddings(tiny)
    _hub_snapshot(hub, "org/tiny", new, tiny)  # main moved to a new commit
    moved = load_model("hf:org/tiny")
    assert moved.model_id == f"hf:org/tiny@{new}|float32"
    third = evaluate_tasks(moved, [task], store=store, limit=4, model_spec="hf:org/tiny", progress=False)
    assert (third.n_calls_cached, third.n_calls_new) == (0, 4)
    assert f"the model at org/tiny changed since run {again.run_id} (revision aaaaaaa -> bbbbbbb)" in " ".join(third.warnings)
    # asking for the old commit by name finds the old answers
    pinned = load_model("hf:org/tiny", revision=old)
    assert pinned.model_id == first.config["model_identity"]["model_id"]


def test_the_hash_memo_file_is_versioned_and_shared_like_the_store(tmp_path):
    import sqlite3

    db = tmp_path / "memo.sqlite"
    # a memo written before it had versions: the table, user_version 0, a remembered hash
    con = sqlite3.connect(db)
    fingerprint._file_hashes_table(con)
    con.execute("INSERT INTO file_hashes VALUES ('/x', 1, 2, 3, 4, 'h', 'abc', 0)")
    con.commit()
    con.close()
    memo = fingerprint.HashMemo(db)
    assert memo.conn.execute("PRAGMA user_version").fetchone()[0] == len(fingerprint.MEMO_MIGRATIONS) == 1
    assert memo.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert memo.conn.execute("SELECT sha256 FROM file_hashes").fetchall() == [("abc",)]
    memo.close()


# ---- OpenAI-compatible servers: what the server says answered -------------------------------------
def test_server_fingerprint_is_stored_with_each_answer_and_a_change_within_a_run_is_reported(tiny, tmp_path, store):
    from capeval.models.serve import ServerThread, create_app

    task = get_task("mtbench-category")
    config = PromptConfig(shots=0)
    old = load_model(f"hf:{tiny}")
    zeroed = Path(shutil.copytree(tiny, tmp_path / "zeroed"))
    zero_output_and_embeddings(zeroed)
    new = load_model(f"hf:{zeroed}")

    def run(limit: int, cache: str = "use"):
        client = load_model(f"openai:tiny@{url}", max_retries=0)
        return evaluate_tasks(client, [task], config, store=store, limit=limit, progress=False, cache=cache)

    with ServerThread(create_app(old, served_name="tiny")) as srv:
        url, port = srv.base_url, srv.port
        first = run(3)
    old_fp = "fp_" + __import__("hashlib").sha256(old.model_id.encode()).hexdigest()[:12]
    answers = [s["response"][0] for s in store.iter_samples(first.run_id)]
    assert {(a["system_fingerprint"], a["served_model"]) for a in answers} == {(old_fp, "tiny")}
    assert not any("changed between answers" in w for w in first.warnings)
    # the cached row keeps it too
    (stored,) = {r["response"] for r in store.query("SELECT response FROM model_calls LIMIT 1")}
    assert json.loads(stored)["system_fingerprint"] == old_fp

    # the same URL and name now serve other weights: 3 answers from the store, 2 from the new model
    with ServerThread(create_app(new, served_name="tiny"), port=port) as srv:
        assert srv.base_url == url
        mixed = run(5)
        assert (mixed.n_calls_cached, mixed.n_calls_new) == (3, 2)
        warning = next(w for w in mixed.warnings if "changed between answers" in w)
        assert f"system_fingerprint {old_fp} (3 answers), fp_" in warning and "(2 answers)" in warning
        assert "--cache refresh" in warning

        before = {r["key"]: r["created_at"] for r in store.query("SELECT key, created_at FROM model_calls")}
        off = run(5, cache="off")  # neither reads nor writes answers
        assert (off.n_calls_cached, off.n_calls_new) == (0, 5)
        assert {r["key"]: r["created_at"] for r in store.query("SELECT key, created_at FROM model_calls")} == before

        refreshed = run(5, cache="refresh")  # every call sent again, every stored answer overwritten
        assert (refreshed.n_calls_cached, refreshed.n_calls_new) == (0, 5)
        assert refreshed.config["cache"] == "refresh"
        assert not any("changed between answers" in w for w in refreshed.warnings)
    fps = {json.loads(r["response"])["system_fingerprint"] for r in store.query("SELECT response FROM model_calls")}
    assert len(fps) == 1 and old_fp not in fps
    assert all(len(set(s["response"][0]["logprobs"])) == 1 for s in store.iter_samples(refreshed.run_id))


def test_cache_option_is_checked_on_the_command_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "capeval", "run", "--tasks", "mtbench-category", "--cache", "sometimes",
         "--db", str(tmp_path / "x.db")],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert proc.stderr.splitlines()[0] == "error: --cache must be use, refresh or off, got 'sometimes'"


def test_mtbench_runs_record_the_identity_and_say_when_the_model_changed(tiny, store):
    from capeval.judge.mtbench import load_questions, run_mtbench
    from scripted_chat import ScriptedChatServer

    qs = load_questions()[:2]
    with ScriptedChatServer(lambda model, messages: "Rating: [[5]]") as judge_srv:
        judge = load_model("openai:judge", base_url=judge_srv.base_url)
        first = run_mtbench(load_model(f"hf:{tiny}"), judge, store, questions=qs, max_tokens=4).run
        assert first.config["model_identity"]["location"] == str(tiny.resolve())
        assert not any("changed since" in w for w in first.warnings)
        zero_output_and_embeddings(tiny)
        second = run_mtbench(load_model(f"hf:{tiny}"), judge, store, questions=qs, max_tokens=4).run
    assert second.n_calls_new > 0
    assert f"the model at {tiny.resolve()} changed since run {first.run_id} (model.safetensors differs)" in " ".join(second.warnings)
