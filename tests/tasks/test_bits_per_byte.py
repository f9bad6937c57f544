"""Bits per byte (humaneval-bpb, mtbench-bpb): the texts scored, and the arithmetic checked on a tiny
real model against a forward pass computed here and on one whose logits are all equal."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from capeval.engine import evaluate_tasks
from capeval.errors import TaskSpecError
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


def run_bpb(folder: Path, store, text: str, limit: int = 3):
    task = get_task("humaneval-bpb", options={"text": text})
    result = evaluate_tasks(load_model(f"hf:{folder}"), [task], PromptConfig(), store=store, limit=limit, progress=False)
    samples = list(store.iter_samples(result.run_id))
    scores = {
        r["sample_id"]: r["value"]
        for r in store.query("SELECT sample_id, value FROM scores WHERE run_id = ? AND metric = 'bits_per_byte'", (result.run_id,))
    }
    return task, result, samples, scores


def scored_tokens(tok, context: str, text: str) -> tuple[list[int], int]:
    """The token ids a causal LM reads and where the scored text starts, made here as lm-eval makes
    them: a document after nothing follows the BOS token; a continuation is cut from the joined text."""
    if not context:
        return [tok.bos_token_id, *tok.encode(text, add_special_tokens=False)], 1
    ids = tok.encode(context + text)
    return ids, len(tok.encode(context))


def test_bits_per_byte_is_the_natural_log_likelihood_in_bits_over_utf8_bytes():
    assert bits_per_byte(-math.log(2) * 12, 4) == pytest.approx(3.0)
    assert bits_per_byte(-math.log(2), len("é".encode())) == pytest.approx(0.5)  # 2 bytes, not 1 character
    with pytest.raises(ValueError, match="at least one byte"):
        bits_per_byte(-1.0, 0)
    assert not higher_is_better("bits_per_byte") and higher_is_better("acc")
    assert metric_label("bits_per_byte") == "bits_per_byte (lower is better)" and metric_label("acc") == "acc"


def test_items_are_whole_problems_or_solutions_after_their_prompts():
    rows = {r["task_id"]: r for r in humaneval_rows("test")}
    problem, solution = get_task("humaneval-bpb"), get_task("humaneval-bpb", options={"text": "solution"})
    for task in (problem, solution):
        loaded = task.load()
        assert len(loaded.samples) == 164 and not loaded.malformed
        assert task.info()["type"] == "loglikelihood" and task.metrics == ("bits_per_byte",)
        for s in loaded.samples:
            row = rows[s.id]
            (text,) = task.continuations(s)
            assert s.fields["context"] + text == row["prompt"] + row["canonical_solution"]
            if task is problem:
                assert s.fields["context"] == ""
            else:  # the prompt's last newline is scored with the solution, as lm-eval splits them
                assert not s.fields["context"][-1].isspace() and text.startswith("\n")
    with pytest.raises(TaskSpecError, match="text must be one of problem, solution"):
        get_task("humaneval-bpb", options={"text": "docstring"})


def test_mtbench_bpb_scores_each_first_turn_and_samples_by_category():
    from capeval.tasks.mtbench_questions import mtbench_questions
    from capeval.tasks.subsets import choose_items

    task = get_task("mtbench-bpb")
    loaded = task.load()
    rows = {f"mtbench-{r['question_id']}": r for r in mtbench_questions()}
    assert len(loaded.samples) == 80 and not loaded.malformed
    for s in loaded.samples:
        assert s.fields["context"] == "" and task.continuations(s) == (rows[s.id]["turns"][0],)
        assert s.metadata["category"] == rows[s.id]["category"]
    chosen, subset, _ = choose_items(task, sample=40, seed=1234)
    assert len(chosen.samples) == 40
    assert subset.describe() == "stratified sample: 40 of 80 items (all 8 category values, seed 1234)"
    assert sorted(k for k, _ in subset.per_stratum.values()) == [5] * 8


@pytest.mark.parametrize("text", ["problem", "solution"])
def test_equal_logits_give_tokens_times_log2_vocab_over_bytes(tiny_template, tmp_path, store, text):
    from transformers import AutoTokenizer

    folder = Path(shutil.copytree(tiny_template, tmp_path / "zeroed"))
    zero_output_and_embeddings(folder)  # every logit equal: each token costs log2(vocab) bits
    task, result, samples, scores = run_bpb(folder, store, text)
    tok = AutoTokenizer.from_pretrained(str(folder))
    assert len(scores) == 3
    for s in task.load(limit=3).samples:
        (scored,) = task.continuations(s)
        ids, start = scored_tokens(tok, s.fields["context"], scored)
        expected = (len(ids) - start) * math.log2(len(tok)) / len(scored.encode())
        assert scores[s.id] == pytest.approx(expected, rel=1e-5)
    m = result.metric("humaneval-bpb", "bits_per_byte")
    assert m.n == 3 and m.value == pytest.approx(sum(scores.values()) / 3, rel=1e-9)
    assert all(s["scores"]["bits_per_byte"] == pytest.approx(scores[s["sample_id"]]) for s in samples)


@pytest.mark.parametrize("text", ["problem", "solution"])
def test_random_model_matches_a_forward_pass_computed_here(tiny_template, store, text):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    task, _, _, scores = run_bpb(tiny_template, store, text, limit=2)
    tok = AutoTokenizer.from_pretrained(str(tiny_template))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_template)).eval()
    for s in task.load(limit=2).samples:
        (scored,) = task.continuations(s)
        ids, start = scored_tokens(tok, s.fields["context"], scored)
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
        ll = sum(logprobs[i - 1, ids[i]].item() for i in range(start, len(ids)))
        expected = -ll / (math.log(2) * len(scored.encode()))
        assert scores[s.id] == pytest.approx(expected, rel=1e-4)
        assert 0 < expected < 20  # a random model: many bits per byte, but finite


def test_long_continuations_are_scored_in_batches_within_the_logits_budget(tiny_template, monkeypatch):
    from capeval.models.hf import scoring
    from capeval.types import Request

    task = get_task("humaneval-bpb")
    reqs = [
        Request("loglikelihood", s.fields["context"], task.continuations(s), task=task.name, sample_id=s.id)
        for s in task.load(limit=4).samples
    ]
    model = load_model(f"hf:{tiny_template}")
    together = model.loglikelihood(reqs)
    assert model.last_stats.forward_passes == 1
    widest = max(r.n_tokens[0] for r in together)
    monkeypatch.setattr(scoring, "MAX_BATCH_LOGITS", widest * len(model.tokenizer))  # one row's worth
    apart = model.loglikelihood(reqs)
    assert model.last_stats.forward_passes == 4
    for a, b in zip(together, apart):
        assert a.logprobs[0] == pytest.approx(b.logprobs[0], rel=1e-4) and a.n_tokens == b.n_tokens
