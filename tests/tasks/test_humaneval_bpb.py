"""humaneval-bpb: bits per byte of HumanEval's canonical solutions given their prompts, checked on a
tiny real model against a forward pass computed here, and on one whose logits are all equal."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from capeval.engine import evaluate_tasks
from capeval.models import load_model
from capeval.prompting import PromptConfig
from capeval.scoring.metrics import bits_per_byte, higher_is_better, metric_label
from capeval.tasks import get_task
from capeval.tasks.humaneval import humaneval_rows
from tiny_model import build_tiny_llama, zero_output_and_embeddings


@pytest.fixture(autouse=True)
def own_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPEVAL_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_template(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model")


def run_bpb(folder: Path, store, limit: int = 3):
    task = get_task("humaneval-bpb")
    result = evaluate_tasks(load_model(f"hf:{folder}"), [task], PromptConfig(), store=store, limit=limit, progress=False)
    samples = list(store.iter_samples(result.run_id))
    scores = {
        r["sample_id"]: r["value"]
        for r in store.query("SELECT sample_id, value FROM scores WHERE run_id = ? AND metric = 'bits_per_byte'", (result.run_id,))
    }
    return result, samples, scores


def test_bits_per_byte_is_the_natural_log_likelihood_in_bits_over_utf8_bytes():
    assert bits_per_byte(-math.log(2) * 12, 4) == pytest.approx(3.0)
    assert bits_per_byte(-math.log(2), len("é".encode())) == pytest.approx(0.5)  # 2 bytes, not 1 character
    with pytest.raises(ValueError, match="at least one byte"):
        bits_per_byte(-1.0, 0)
    assert not higher_is_better("bits_per_byte") and higher_is_better("acc")
    assert metric_label("bits_per_byte") == "bits_per_byte (lower is better)" and metric_label("acc") == "acc"


def test_items_are_the_prompt_and_its_canonical_solution_split_where_lm_eval_splits():
    task = get_task("humaneval-bpb")
    loaded = task.load()
    rows = {r["task_id"]: r for r in humaneval_rows("test")}
    assert len(loaded.samples) == 164 and not loaded.malformed
    for s in loaded.samples:
        row = rows[s.id]
        (text,) = task.continuations(s)
        assert s.fields["context"] + text == row["prompt"] + row["canonical_solution"]
        assert not s.fields["context"][-1].isspace() and text.startswith("\n")
    assert task.info()["type"] == "loglikelihood" and task.metrics == ("bits_per_byte",)


def test_equal_logits_give_tokens_times_log2_vocab_over_bytes(tiny_template, tmp_path, store):
    folder = Path(shutil.copytree(tiny_template, tmp_path / "zeroed"))
    zero_output_and_embeddings(folder)  # every logit equal: each token costs log2(vocab) bits
    result, samples, scores = run_bpb(folder, store)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    vocab = len(tok)
    task = get_task("humaneval-bpb")
    by_id = {s.id: s for s in task.load(limit=3).samples}
    assert len(scores) == 3
    for sid, value in scores.items():
        s = by_id[sid]
        (text,) = task.continuations(s)
        ctx = tok.encode(s.fields["context"])
        n_tokens = len(tok.encode(s.fields["context"] + text)) - len(ctx)
        assert value == pytest.approx(n_tokens * math.log2(vocab) / len(text.encode()), rel=1e-5)
    m = result.metric("humaneval-bpb", "bits_per_byte")
    assert m.n == 3 and m.value == pytest.approx(sum(scores.values()) / 3, rel=1e-9)
    assert all(s["scores"]["bits_per_byte"] == pytest.approx(scores[s["sample_id"]]) for s in samples)


def test_random_model_matches_a_forward_pass_over_prompt_and_solution(tiny_template, store):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, scores = run_bpb(tiny_template, store, limit=2)
    tok = AutoTokenizer.from_pretrained(str(tiny_template))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_template)).eval()
    task = get_task("humaneval-bpb")
    for s in task.load(limit=2).samples:
        (text,) = task.continuations(s)
        ctx = tok.encode(s.fields["context"])
        ids = tok.encode(s.fields["context"] + text)
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
        ll = sum(logprobs[i - 1, ids[i]].item() for i in range(len(ctx), len(ids)))
        expected = -ll / (math.log(2) * len(text.encode()))
        assert scores[s.id] == pytest.approx(expected, rel=1e-4)
        assert 0 < expected < 20  # a random model: many bits per byte, but finite
