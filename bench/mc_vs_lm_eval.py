"""Multiple-choice speed: capeval vs lm-evaluation-harness vs a bare forward pass, same data and model.

Usage:  python bench/mc_vs_lm_eval.py [--items 200] [--batch-size 16] [--threads 2] [--skip-lm-eval]

The 4-choice items are generated from a seed (bench/data/mc200.jsonl, dev exemplars in
bench/data/mc200_dev.jsonl; re-created with --regenerate). The same prompt,

    Question: ...\\nA. ...\\nB. ...\\nC. ...\\nD. ...\\nAnswer:

scored on " A".." D" by log-likelihood, goes through capeval (engine.evaluate_tasks with the bundled
SmolLM2), through lm-eval 0.4.13 (simple_evaluate with an HFLM over the same de-quantised weights
folder and a local task YAML), and through a bare batched forward pass that computes only the last
position's logits. 5-shot uses the first 5 dev items as exemplars in both tools (lm-eval's
`first_n` sampler), and the script checks that the two tools rendered the same prompts.
Prints wall times, ratios and whether every per-item prediction agrees. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).resolve().parent / "data"
TEST_FILE = DATA / "mc200.jsonl"
DEV_FILE = DATA / "mc200_dev.jsonl"
SEED = 20240611
MODEL = "smollm2-135m-instruct"
TASK = "mc200_bench"
LETTERS = "ABCD"

# ---- data: 4-choice word problems with computed answers ---------------------------------------
NAMES = ["Maya", "Omar", "Lena", "Tom", "Priya", "Kofi", "Sara", "Ivan", "Mei", "Lucas", "Ana", "Yusuf"]
THINGS = ["apples", "stickers", "marbles", "books", "pencils", "coins", "shells", "cards", "stamps", "eggs"]
CITIES = ["Lyon", "Porto", "Graz", "Turin", "Ghent", "Bergen", "Cork", "Split"]


def _choices(
    rng: random.Random, gold: Any, candidates: Sequence[Any], fmt: Callable[[Any], str] = str
) -> tuple[list[str], int]:
    """Gold plus three distinct distractors, shuffled; returns (choices, gold index)."""
    pool = [c for c in dict.fromkeys(candidates) if c != gold and (not isinstance(c, int) or c >= 0)]
    rng.shuffle(pool)
    options = [gold] + pool[:3]
    if len(options) < 4:
        raise ValueError("not enough distractors")
    rng.shuffle(options)
    return [fmt(o) for o in options], options.index(gold)


def _addition(rng: random.Random) -> tuple[str, list[str], int]:
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    a, b = rng.randint(12, 89), rng.randint(5, 60)
    q = f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?"
    return (q, *_choices(rng, a + b, [a + b + 1, a + b - 1, a + b + 10, a + b - 10, abs(a - b), a + b + 2]))


def _subtraction(rng: random.Random) -> tuple[str, list[str], int]:
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    a = rng.randint(30, 99)
    b = rng.randint(4, a - 5)
    q = f"{name} had {a} {thing} and gave {b} of them away. How many {thing} are left?"
    return (q, *_choices(rng, a - b, [a - b + 1, a - b - 1, a + b, a - b + 10, a - b - 10, b]))


def _multiplication(rng: random.Random) -> tuple[str, list[str], int]:
    thing = rng.choice(THINGS)
    a, b = rng.randint(3, 12), rng.randint(3, 12)
    q = f"One box holds {a} {thing}. How many {thing} are there in {b} boxes?"
    return (q, *_choices(rng, a * b, [a * b + a, a * b - a, a + b, a * b + b, a * b - b, a * (b + 2)]))


def _largest(rng: random.Random) -> tuple[str, list[str], int]:
    nums = rng.sample(range(10, 1000), 4)
    smallest = rng.random() < 0.5
    q = f"Which of these numbers is the {'smallest' if smallest else 'largest'}?"
    gold = min(nums) if smallest else max(nums)
    return (q, *_choices(rng, gold, nums))


def _ordering(rng: random.Random) -> tuple[str, list[str], int]:
    nums = rng.sample(range(1, 100), 4)
    ordered = tuple(sorted(nums))
    wrong: list[tuple[int, ...]] = []
    while len(wrong) < 3:
        perm = tuple(rng.sample(nums, 4))
        if perm != ordered and perm not in wrong:
            wrong.append(perm)
    q = "Which list is sorted from smallest to largest?"
    return (q, *_choices(rng, ordered, wrong, lambda t: ", ".join(map(str, t))))


def _clock(rng: random.Random) -> tuple[str, list[str], int]:
    city = rng.choice(CITIES)
    start, hours = rng.randint(5, 14), rng.randint(2, 9)
    q = f"A train leaves at {start}:00 and reaches {city} {hours} hours later. At what time does it arrive?"
    end = start + hours
    return (
        q,
        *_choices(
            rng,
            end,
            [end + 1, end - 1, end + 2, start + hours * 2, abs(start - hours) + 1],
            lambda h: f"{h % 24}:00",
        ),
    )


def _weeks(rng: random.Random) -> tuple[str, list[str], int]:
    w = rng.randint(2, 15)
    q = f"How many days are there in {w} weeks?"
    return (q, *_choices(rng, 7 * w, [7 * w + 7, 7 * w - 7, 5 * w, 7 * w + 1, 6 * w, 7 + w]))


GENERATORS = [_addition, _subtraction, _multiplication, _largest, _ordering, _clock, _weeks]


def generate_items(n: int, seed: int, prefix: str) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        make = GENERATORS[i % len(GENERATORS)]
        question, choices, answer = make(rng)
        items.append(
            {
                "id": f"{prefix}-{i:03d}",
                "kind": make.__name__.lstrip("_"),
                "question": question,
                "choices": choices,
                "answer": answer,
            }
        )
    return items


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ensure_data(regenerate: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    test, dev = generate_items(200, SEED, "mc200"), generate_items(10, SEED + 1, "dev")
    if regenerate or not TEST_FILE.exists() or not DEV_FILE.exists():
        write_jsonl(TEST_FILE, test)
        write_jsonl(DEV_FILE, dev)
    test_rows, dev_rows = read_jsonl(TEST_FILE), read_jsonl(DEV_FILE)
    if test_rows != test or dev_rows != dev:
        print("note: bench/data differs from what this script generates (run with --regenerate)")
    return test_rows, dev_rows


def prompt_text(row: dict[str, Any]) -> str:
    """The 0-shot prompt, written out by hand for the bare forward pass."""
    lines = [f"Question: {row['question']}"] + [f"{LETTERS[i]}. {c}" for i, c in enumerate(row["choices"])]
    return "\n".join(lines) + "\nAnswer:"


# ---- the three runners ----------------------------------------------------------------------------
@dataclass
class Outcome:
    wall_s: float
    model_s: float
    predictions: list[int]
    prompts: list[str]


def run_capeval(model: Any, data_dir: Path, shots: int, n: int, chunk_size: int | None = None) -> Outcome:
    from capeval.engine import DEFAULT_CHUNK, evaluate_tasks, execute, plan_task
    from capeval.prompting import PromptConfig, PromptLayout
    from capeval.store import Store
    from capeval.tasks.base import Task
    from capeval.tasks.sources import Source
    from capeval.types import Sample

    class FirstExemplarsTask(Task):
        """Exemplars: the first k dev items in order, as lm-eval's `first_n` sampler takes them."""

        def exemplars_for(self, sample: Sample, pool: Sequence[Sample], config: PromptConfig) -> list[Sample]:
            k = self.shots if config.shots is None else config.shots
            return list(pool[:k])

    def to_sample(row: dict[str, Any], index: int, task: Task) -> Sample:
        return Sample(
            id=row["id"],
            task=task.name,
            fields={"question": f"Question: {row['question']}"},
            target=int(row["answer"]),
            choices=tuple(row["choices"]),
        )

    task = FirstExemplarsTask(
        name=TASK,
        source=Source("local", str(data_dir)),
        split="test",
        fewshot_split="dev",
        output_type="multiple_choice",
        layout=PromptLayout(answer_prefix="Answer:"),
        row_to_sample_fn=to_sample,
        metrics=("acc",),
    )
    config = PromptConfig(shots=shots)
    timed = _TimedLoglikelihood(model)
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.db") as store:
        start = time.perf_counter()
        evaluate_tasks(  # type: ignore[arg-type]
            timed,
            [task],
            config,
            store=store,
            limit=n,
            progress=False,
            chunk_size=chunk_size or DEFAULT_CHUNK,
        )
        wall = time.perf_counter() - start
        plan = plan_task(task, config, limit=n)  # every call is in the store now: read the answers back
        responses, stats = execute(model, [rs[0] for rs in plan.requests], store)
        assert stats.new == 0, "the second pass should be answered from the store"
    preds = [max(range(len(r.logprobs)), key=r.logprobs.__getitem__) for r in responses]
    return Outcome(wall, timed.seconds, preds, plan.prompts)


class _TimedLoglikelihood:
    """A model wrapper that adds up the time spent inside loglikelihood()."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.model_id = model.model_id
        self.seconds = 0.0

    def loglikelihood(self, requests: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.model.loglikelihood(requests)
        finally:
            self.seconds += time.perf_counter() - start

    def generate(self, requests: Any) -> Any:
        return self.model.generate(requests)


LM_EVAL_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {test}
    dev: {dev}
test_split: test
fewshot_split: dev
fewshot_config:
  sampler: first_n
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nA. {{{{choices[0]}}}}\\nB. {{{{choices[1]}}}}\\nC. {{{{choices[2]}}}}\\nD. {{{{choices[3]}}}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
metric_list:
  - metric: acc
"""


def run_lm_eval(lm: Any, data_dir: Path, shots: int, n: int) -> Outcome:
    import lm_eval
    from lm_eval.tasks import TaskManager

    yaml_dir = data_dir / "lm_eval_task"
    yaml_dir.mkdir(exist_ok=True)
    (yaml_dir / f"{TASK}.yaml").write_text(
        LM_EVAL_YAML.format(task=TASK, test=data_dir / "test.jsonl", dev=data_dir / "dev.jsonl")
    )
    manager = TaskManager(include_path=str(yaml_dir))
    inner = lm._loglikelihood_tokens
    spent = [0.0]

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    lm._loglikelihood_tokens = timed
    try:
        start = time.perf_counter()
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=[TASK],
            num_fewshot=shots,
            task_manager=manager,
            limit=n,
            log_samples=True,
            verbosity="ERROR",
        )
        wall = time.perf_counter() - start
    finally:
        lm._loglikelihood_tokens = inner
    samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])
    preds = [max(range(4), key=lambda i: float(s["filtered_resps"][i][0])) for s in samples]
    prompts = [s["arguments"][0][0] for s in samples]
    return Outcome(wall, spent[0], preds, prompts)


def run_bare_forward(model: Any, prompts: list[str], batch_size: int) -> Outcome:
    """The floor: tokenize, length-sorted left-padded batches, logits of the last position only."""
    import torch

    tok, lm = model.tokenizer, model.model
    letter_ids = [tok.encode(" " + c, add_special_tokens=False)[0] for c in LETTERS]
    start = time.perf_counter()
    encoded = [tok.encode(p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
    preds = [0] * len(prompts)
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), model.pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
                mask[row, width - len(encoded[i]) :] = 1
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = lm(
                ids.to(lm.device), attention_mask=mask.to(lm.device), position_ids=pos.to(lm.device), logits_to_keep=1
            ).logits[:, -1, :]
            for row, i in enumerate(idx):
                preds[i] = int(logits[row, letter_ids].argmax())
    wall = time.perf_counter() - start
    return Outcome(wall, wall, preds, prompts)


def device_label(device: str) -> str:
    """The device as the scripts print and record it: "cuda (NVIDIA H100 80GB HBM3)", or "cpu"."""
    import torch

    return f"{device} ({torch.cuda.get_device_name(torch.device(device))})" if device.startswith("cuda") else device


def load_average() -> str:
    try:
        return (
            subprocess.run(["uptime"], capture_output=True, text=True, check=False)
            .stdout.strip()
            .split("load average:")[-1]
            .strip()
        )
    except OSError:
        return "unknown"


def agree(a: Sequence[int], b: Sequence[int]) -> str:
    same = sum(x == y for x, y in zip(a, b))
    return f"{same}/{len(a)}" + (" identical" if same == len(a) else " DIFFER")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (all three runners)")
    ap.add_argument("--dtype", default="float32", help="weights' dtype for all three runners")
    ap.add_argument("--shots", default="0,5", help="comma-separated shot counts")
    ap.add_argument("--skip-lm-eval", action="store_true")
    ap.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="requests per backend call in capeval's engine (default: the engine's); the backend "
        "length-sorts only within one call",
    )
    ap.add_argument("--regenerate", action="store_true", help="rewrite bench/data from the seed")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from capeval.models import load_model
    from capeval.models.bundled import ensure_weights

    test_rows, dev_rows = ensure_data(args.regenerate)
    n = min(args.items, len(test_rows))
    device = device_label(args.device)
    print(
        f"load average before: {load_average()}  (device={device}, dtype={args.dtype}, threads={args.threads}, "
        f"items={n}, batch={args.batch_size})"
    )
    weights = ensure_weights(MODEL)
    model = load_model(MODEL, batch_size=args.batch_size, device=args.device, dtype=args.dtype)
    lm = None
    if not args.skip_lm_eval:
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=str(weights), batch_size=args.batch_size, device=args.device, dtype=args.dtype)
    shots = [int(s) for s in args.shots.split(",")]
    report: dict[str, Any] = {
        "chunk_size": args.chunk_size,
        "items": n,
        "device": device,
        "dtype": args.dtype,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "load_before": load_average(),
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        write_jsonl(data_dir / "test.jsonl", test_rows[:n])
        write_jsonl(data_dir / "dev.jsonl", dev_rows)
        zero_shot = [prompt_text(r) for r in test_rows[:n]]
        # best of two: the first pass also warms up the allocator and the kernels for everyone
        bare = min(
            (run_bare_forward(model, zero_shot, args.batch_size) for _ in range(2)), key=lambda o: o.wall_s
        )
        for k in shots:
            ours = run_capeval(model, data_dir, k, n, args.chunk_size)
            line = {"capeval_s": round(ours.wall_s, 2), "capeval_model_s": round(ours.model_s, 2)}
            gold = [int(r["answer"]) for r in test_rows[:n]]
            acc = sum(p == g for p, g in zip(ours.predictions, gold)) / n
            print(
                f"\n{k}-shot  capeval: {ours.wall_s:6.1f} s wall ({ours.model_s:.1f} s in the model), acc {acc:.3f}"
            )
            if k == 0:
                ratio = ours.wall_s / bare.wall_s
                line.update(
                    bare_forward_s=round(bare.wall_s, 2),
                    capeval_over_bare=round(ratio, 3),
                    bare_agreement=agree(ours.predictions, bare.predictions),
                )
                print(
                    f"        bare forward: {bare.wall_s:6.1f} s   capeval / bare = {ratio:.2f}x (target <= 1.15x)"
                    f"   predictions {agree(ours.predictions, bare.predictions)}"
                )
                if zero_shot != ours.prompts:
                    print("        note: capeval's 0-shot prompts differ from the hand-written ones")
            if lm is not None:
                theirs = run_lm_eval(lm, data_dir, k, n)
                ratio = theirs.wall_s / ours.wall_s
                same_prompts = theirs.prompts == ours.prompts
                line.update(
                    lm_eval_s=round(theirs.wall_s, 2),
                    lm_eval_model_s=round(theirs.model_s, 2),
                    lm_eval_over_capeval=round(ratio, 2),
                    same_prompts=same_prompts,
                    lm_eval_agreement=agree(ours.predictions, theirs.predictions),
                )
                print(
                    f"        lm-eval: {theirs.wall_s:6.1f} s wall ({theirs.model_s:.1f} s in the model)   "
                    f"lm-eval / capeval = {ratio:.2f}x{' (target >= 5x)' if k else ''}"
                )
                print(
                    f"        same prompts: {same_prompts}   predictions {agree(ours.predictions, theirs.predictions)}"
                )
            report["runs"][f"{k}-shot"] = line
    report["load_after"] = load_average()
    print(f"\nload average after: {report['load_after']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
