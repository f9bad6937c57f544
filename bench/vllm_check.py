"""GPU check of the vLLM backend against the transformers backend on the same weights.

Needs a CUDA GPU and `pip install -e '.[vllm]'`. Loads the bundled SmolLM2-135M-Instruct (its cached
float32 safetensors, or --model-dir) through `hf:` on the GPU and through `vllm:`, then on the 200
multiple-choice items of bench/data/mc200.jsonl prints:
- log-likelihood: share of items whose predicted choice agrees, the largest difference of a choice's
  summed log-probability, and both wall times with their ratio;
- greedy generation of --gen prompts: share of identical texts and both wall times;
- greedy 8-shot chain of thought on --gen GSM8K-style prompts of bench/data/gen48.jsonl (the 8
  exemplars of gen48_train.jsonl as their shared prefix, 192 new tokens, stop "Question:"): share of
  identical texts between hf and vLLM, and vLLM's wall time with automatic prefix caching on (the
  backend's default) and off, with the speed-up it brings.
vLLM uses its own kernels (and bfloat16 unless --dtype float32), so small numeric differences are
expected; a large disagreement points at a token-alignment bug in the backend.

    python bench/vllm_check.py [--dtype float32] [--gen 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def items(n: int) -> list[dict]:
    rows = [json.loads(line) for line in (HERE / "data" / "mc200.jsonl").read_text().splitlines() if line.strip()]
    return rows[:n]


def few_shot_requests(n: int) -> list:
    """8-shot chain-of-thought requests on the GSM8K-style items, prompts as capeval's gsm8k task
    renders them (exemplar answers: rationale + "The answer is N."), the exemplars as shared prefix."""
    from capeval.types import GenerationParams, Request

    def read(name: str) -> list[dict]:
        return [json.loads(line) for line in (HERE / "data" / name).read_text().splitlines() if line.strip()]

    def worked(answer: str) -> str:
        rationale, number = answer.rsplit("####", 1)
        return " ".join(line.strip() for line in rationale.splitlines() if line.strip()) + f" The answer is {number.strip()}."

    prefix = "".join(f"Question: {r['question']}\nAnswer: {worked(r['answer'])}\n\n" for r in read("gen48_train.jsonl"))
    params = GenerationParams(max_tokens=192, stop=("Question:",))
    return [
        Request(kind="generate", prompt=prefix + f"Question: {r['question']}\nAnswer:", params=params, shared_prefix=prefix)
        for r in read("gen48.jsonl")[:n]
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", help="a transformers model folder (default: the bundled SmolLM2's cached weights)")
    ap.add_argument("--dtype", default="float32", help="dtype for both backends (float32, bfloat16, float16)")
    ap.add_argument("--n", type=int, default=200, help="multiple-choice items")
    ap.add_argument("--gen", type=int, default=32, help="greedy generation prompts")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU: this check compares vLLM with transformers on a GPU", file=sys.stderr)
        return 2
    from capeval.models import load_model
    from capeval.models.bundled import ensure_weights
    from capeval.types import GenerationParams, Message, Request

    folder = args.model_dir or str(ensure_weights("smollm2-135m-instruct"))
    rows = items(args.n)
    ll = [
        Request(kind="loglikelihood", prompt=r["question"] + "\n" + "\n".join(f"{k}. {c}" for k, c in zip("ABCD", r["choices"])) + "\nAnswer:",
                continuations=(" A", " B", " C", " D"))
        for r in rows
    ]
    gen = [Request(kind="generate", prompt=(Message("user", r["question"]),), params=GenerationParams(max_tokens=48)) for r in rows[: args.gen]]
    cot = few_shot_requests(args.gen)

    out: dict[str, float] = {}
    results = {}
    runs = (
        ("hf", f"hf:{folder}", {"dtype": args.dtype, "device": "cuda"}),
        ("vllm", f"vllm:{folder}", {"dtype": args.dtype}),
        ("vllm_no_prefix_caching", f"vllm:{folder}", {"dtype": args.dtype, "prefix_caching": False}),
    )
    for name, spec, opts in runs:
        model = load_model(spec, **opts)
        if name != "vllm_no_prefix_caching":
            start = time.perf_counter()
            scored = model.loglikelihood(ll)
            out[f"{name}_loglikelihood_s"] = time.perf_counter() - start
            start = time.perf_counter()
            texts = model.generate(gen)
            out[f"{name}_generate_s"] = time.perf_counter() - start
            results[name] = (scored, texts)
        start = time.perf_counter()
        results[name + "_cot"] = model.generate(cot)
        out[f"{name}_8shot_cot_s"] = time.perf_counter() - start
        del model
        torch.cuda.empty_cache()
    (hf_ll, hf_gen), (vl_ll, vl_gen) = results["hf"], results["vllm"]
    same = lambda a, b: sum(x.text == y.text for x, y in zip(a, b)) / max(1, len(cot))
    out["cot_text_agreement_hf_vllm"] = same(results["hf_cot"], results["vllm_cot"])
    out["cot_text_agreement_prefix_caching_on_off"] = same(results["vllm_cot"], results["vllm_no_prefix_caching_cot"])
    out["prefix_caching_speedup"] = out["vllm_no_prefix_caching_8shot_cot_s"] / out["vllm_8shot_cot_s"]
    def pred(r: object) -> int:
        lps = r.logprobs  # type: ignore[attr-defined]
        return max(range(len(lps)), key=lps.__getitem__)

    out["choice_agreement"] = sum(pred(a) == pred(b) for a, b in zip(hf_ll, vl_ll)) / len(ll)
    out["max_abs_logprob_diff"] = max(abs(x - y) for a, b in zip(hf_ll, vl_ll) for x, y in zip(a.logprobs, b.logprobs))
    out["greedy_text_agreement"] = sum(a.text == b.text for a, b in zip(hf_gen, vl_gen)) / max(1, len(gen))
    out["loglikelihood_speedup"] = out["hf_loglikelihood_s"] / out["vllm_loglikelihood_s"]
    out["generate_speedup"] = out["hf_generate_s"] / out["vllm_generate_s"]
    for k, v in out.items():
        print(f"{k:28s} {v:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
