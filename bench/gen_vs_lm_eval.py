"""Greedy generation, capeval vs lm-evaluation-harness vs a bare `model.generate` loop, same prompts.

GSM8K-style word problems that this script writes itself (bench/data/gen48*.jsonl, from a fixed
seed, every answer computed) go through capeval's `gsm8k` task on a local folder (engine.evaluate_tasks
with the bundled SmolLM2, a fresh store), through lm-eval 0.4.13's `HFLM.generate_until` on exactly the
prompts capeval rendered (same batch size, same stop string and token budget), and through a bare
loop of `model.generate` over length-sorted left-padded batches. 0-shot and 8-shot chain of thought
(the 8 exemplars are the whole few-shot split, so every item shares them). Prints wall times, ratios
and how many outputs are identical. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mc_vs_lm_eval import CITIES, NAMES, THINGS, device_label, load_average, read_jsonl, write_jsonl

DATA = Path(__file__).resolve().parent / "data"
TEST_FILE = DATA / "gen48.jsonl"
TRAIN_FILE = DATA / "gen48_train.jsonl"
SEED = 20261126
MODEL = "smollm2-135m-instruct"
STOP = "Question:"


# ---- data: GSM8K-style word problems with worked answers ("... #### N") ---------------------------
def _shopping(rng: random.Random) -> tuple[str, str]:
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    n, price, paid = rng.randint(3, 9), rng.randint(2, 7), 0
    paid = n * price + rng.choice([5, 10, 20])
    cost = n * price
    q = f"{name} buys {n} {thing} at ${price} each and pays with ${paid}. How much change does {name} get?"
    a = f"The {thing} cost {n} * {price} = {cost} dollars.\n{name} gets {paid} - {cost} = {paid - cost} dollars back.\n#### {paid - cost}"
    return q, a


def _sharing(rng: random.Random) -> tuple[str, str]:
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    friends, each, extra = rng.randint(2, 6), rng.randint(3, 9), rng.randint(1, 9)
    total = friends * each + extra
    q = (f"{name} has {total} {thing}. {name} keeps {extra} and shares the rest equally among "
         f"{friends} friends. How many {thing} does each friend get?")
    a = f"{name} shares {total} - {extra} = {total - extra} {thing}.\nEach friend gets {total - extra} / {friends} = {each}.\n#### {each}"
    return q, a


def _travel(rng: random.Random) -> tuple[str, str]:
    city = rng.choice(CITIES)
    speed, hours, back = rng.randint(40, 90), rng.randint(3, 6), rng.randint(1, 2)
    out, ret = speed * hours, speed * back
    q = (f"A bus drives to {city} at {speed} km per hour for {hours} hours, then drives back toward home "
         f"for {back} hours at the same speed. How far is the bus from home now?")
    a = (f"It drove {speed} * {hours} = {out} km out.\nIt drove {speed} * {back} = {ret} km back.\n"
         f"It is {out} - {ret} = {out - ret} km from home.\n#### {out - ret}")
    return q, a


def _savings(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(NAMES)
    start, weekly, weeks = rng.randint(10, 60), rng.randint(4, 15), rng.randint(3, 10)
    end = start + weekly * weeks
    q = f"{name} has ${start} saved and saves ${weekly} every week. How much will {name} have after {weeks} weeks?"
    a = f"{name} saves {weekly} * {weeks} = {weekly * weeks} dollars.\n{name} will have {start} + {weekly * weeks} = {end} dollars.\n#### {end}"
    return q, a


GENERATORS = [_shopping, _sharing, _travel, _savings]


def generate_items(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [dict(zip(("question", "answer"), GENERATORS[i % len(GENERATORS)](rng))) for i in range(n)]


def ensure_data(n: int, regenerate: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The first `n` test items (more are generated on demand) and the 8 exemplars."""
    test, train = generate_items(max(n, 48), SEED), generate_items(8, SEED + 1)
    if regenerate or not TEST_FILE.exists() or not TRAIN_FILE.exists():
        write_jsonl(TEST_FILE, test[:48])
        write_jsonl(TRAIN_FILE, train)
    stored = read_jsonl(TEST_FILE)
    if stored != test[:48] or read_jsonl(TRAIN_FILE) != train:
        print("note: bench/data differs from what this script generates (run with --regenerate)")
    return (stored + test[48:])[:n], read_jsonl(TRAIN_FILE)


# ---- the three runners ----------------------------------------------------------------------------
@dataclass
class Outcome:
    wall_s: float
    model_s: float
    texts: list[str]
    prompts: list[str]


def capeval_task(data_dir: Path, max_tokens: int) -> Any:
    """capeval's own gsm8k task on the local files, with the benchmark's stop string and budget."""
    from dataclasses import replace

    from capeval.tasks.gsm8k import gsm8k
    from capeval.types import GenerationParams

    task = gsm8k(data=str(data_dir))
    task.generation = replace(task.generation, max_tokens=max_tokens, stop=(STOP,))
    assert isinstance(task.generation, GenerationParams)
    return task


def run_capeval(model: Any, data_dir: Path, shots: int, n: int, max_tokens: int) -> Outcome:
    from capeval.engine import evaluate_tasks, execute, plan_task
    from capeval.prompting import PromptConfig
    from capeval.store import Store

    task = capeval_task(data_dir, max_tokens)
    config = PromptConfig(shots=shots)
    timed = _TimedGenerate(model)
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.db") as store:
        start = time.perf_counter()
        evaluate_tasks(timed, [task], config, store=store, limit=n, progress=False)  # type: ignore[arg-type]
        wall = time.perf_counter() - start
        plan = plan_task(task, config, limit=n)  # every call is in the store now: read the answers back
        responses, stats = execute(model, [rs[0] for rs in plan.requests], store)
        assert stats.new == 0, "the second pass should be answered from the store"
    return Outcome(wall, timed.seconds, [r.text or "" for r in responses], plan.prompts)


class _TimedGenerate:
    """A model wrapper that adds up the time spent inside generate() or stream()."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.model_id = model.model_id
        self.batch_size = model.batch_size
        self.seconds = 0.0

    def generate(self, requests: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.model.generate(requests)
        finally:
            self.seconds += time.perf_counter() - start

    def stream(self, requests: Any) -> Any:
        # the engine prefers stream (the transformers backend has it): time each step of it
        answers = self.model.stream(requests)
        while True:
            start = time.perf_counter()
            try:
                item = next(answers)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - start
            yield item

    def loglikelihood(self, requests: Any) -> Any:
        return self.model.loglikelihood(requests)


def run_lm_eval(lm: Any, prompts: list[str], max_tokens: int) -> Outcome:
    """lm-eval's HFLM.generate_until on capeval's prompts: greedy, until STOP, max_gen_toks."""
    from lm_eval.api.instance import Instance

    kwargs = {"until": [STOP], "max_gen_toks": max_tokens, "do_sample": False}
    instances = [
        Instance(request_type="generate_until", doc={}, arguments=(p, dict(kwargs)), idx=0) for p in prompts
    ]
    start = time.perf_counter()
    texts = lm.generate_until(instances, disable_tqdm=True)
    wall = time.perf_counter() - start
    return Outcome(wall, wall, list(texts), prompts)


def run_bare_generate(model: Any, prompts: list[str], batch_size: int, max_tokens: int) -> Outcome:
    """The plain way: length-sorted left-padded batches through `model.generate` (greedy, stop
    strings), each text cut at the stop string."""
    import torch

    tok, lm = model.tokenizer, model.model
    start = time.perf_counter()
    encoded = [tok.encode(p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
    texts = [""] * len(prompts)
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), model.pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
                mask[row, width - len(encoded[i]) :] = 1
            out = lm.generate(
                input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device), max_new_tokens=max_tokens,
                do_sample=False,
                stop_strings=[STOP], tokenizer=tok, pad_token_id=model.pad_id,
                eos_token_id=sorted(model.eos_ids),
            )
            for row, i in enumerate(idx):
                text = tok.decode(out[row, width:], skip_special_tokens=True)
                texts[i] = text.split(STOP)[0]
    wall = time.perf_counter() - start
    return Outcome(wall, wall, texts, prompts)


def identical(a: Sequence[str], b: Sequence[str]) -> str:
    same = sum(x == y for x, y in zip(a, b))
    return f"{same}/{len(a)} identical"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=48)
    ap.add_argument("--max-tokens", type=int, default=192)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (all three runners)")
    ap.add_argument("--dtype", default="float32", help="weights' dtype for all three runners")
    ap.add_argument("--shots", default="0,8", help="comma-separated shot counts (8 at most)")
    ap.add_argument("--capeval-option", action="append", default=[], metavar="KEY=VALUE",
                    help="an option of capeval's hf backend, read as --model-option is, e.g. cuda_graphs=false")
    ap.add_argument("--skip-lm-eval", action="store_true")
    ap.add_argument("--skip-bare", action="store_true")
    ap.add_argument("--regenerate", action="store_true", help="rewrite bench/data/gen48*.jsonl from the seed")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from capeval.models import load_model
    from capeval.models.bundled import ensure_weights

    test_rows, train_rows = ensure_data(args.items, args.regenerate)
    n = len(test_rows)
    device = device_label(args.device)
    print(f"load average before: {load_average()}  (device={device}, dtype={args.dtype}, threads={args.threads}, "
          f"items={n}, batch={args.batch_size}, max new tokens={args.max_tokens})")
    weights = ensure_weights(MODEL)
    from capeval.commands_core import _parse_options

    options = _parse_options(args.capeval_option)  # as the CLI reads --model-option
    model = load_model(MODEL, batch_size=args.batch_size, device=args.device, dtype=args.dtype, **options)
    lm = None
    if not args.skip_lm_eval:
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=str(weights), batch_size=args.batch_size, device=args.device, dtype=args.dtype)
    report: dict[str, Any] = {"items": n, "device": device, "dtype": args.dtype, "threads": args.threads, "batch_size": args.batch_size,
                              "capeval_options": options,
                              "max_tokens": args.max_tokens, "load_before": load_average(), "runs": {}}
    if args.device.startswith("cuda"):
        # CUDA's first use in a process (context, cuBLAS, kernel loading) costs a second or more:
        # paid here, not by whichever runner happens to go first
        from capeval.types import GenerationParams, Request

        model.generate([Request("generate", "Question: 1 + 1?\nAnswer:", params=GenerationParams(max_tokens=8))])
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        write_jsonl(data_dir / "test.jsonl", test_rows)
        write_jsonl(data_dir / "train.jsonl", train_rows)
        for k in [int(s) for s in args.shots.split(",")]:
            ours = run_capeval(model, data_dir, k, n, args.max_tokens)
            line: dict[str, Any] = {"capeval_s": round(ours.wall_s, 2), "capeval_model_s": round(ours.model_s, 2)}
            stats = model.last_stats
            line.update(guessed_tokens=stats.draft_tokens, guesses_kept=stats.accepted_draft_tokens,
                        graph_replays=stats.graph_replays)
            print(f"\n{k}-shot  capeval: {ours.wall_s:6.1f} s wall ({ours.model_s:.1f} s in generate; "
                  f"{stats.accepted_draft_tokens} of {stats.draft_tokens} guessed tokens kept; "
                  f"{stats.graph_replays} steps as CUDA graphs)")
            if not args.skip_bare:
                bare = run_bare_generate(model, ours.prompts, args.batch_size, args.max_tokens)
                line.update(bare_generate_s=round(bare.wall_s, 2), bare_over_capeval=round(bare.wall_s / ours.wall_s, 2),
                            bare_identical=identical(ours.texts, bare.texts))
                print(f"        bare model.generate: {bare.wall_s:6.1f} s   bare / capeval = "
                      f"{bare.wall_s / ours.wall_s:.2f}x   outputs {identical(ours.texts, bare.texts)}")
            if lm is not None:
                theirs = run_lm_eval(lm, ours.prompts, args.max_tokens)
                target = " (target >= 5x)" if k else " (target >= 3x)"
                line.update(lm_eval_s=round(theirs.wall_s, 2), lm_eval_over_capeval=round(theirs.wall_s / ours.wall_s, 2),
                            lm_eval_identical=identical(ours.texts, theirs.texts))
                print(f"        lm-eval generate_until: {theirs.wall_s:6.1f} s   lm-eval / capeval = "
                      f"{theirs.wall_s / ours.wall_s:.2f}x{target}   outputs {identical(ours.texts, theirs.texts)}")
            report["runs"][f"{k}-shot"] = line
    report["load_after"] = load_average()
    print(f"\nload average after: {report['load_after']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
