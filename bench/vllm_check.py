"""GPU check of the vLLM backend against the transformers backend on the same weights.

Needs a CUDA GPU and `pip install -e '.[vllm]'`. Loads the bundled SmolLM2-135M-Instruct (its cached
float32 safetensors, or --model-dir) through `hf:` on the GPU and through `vllm:`, then on the 200
multiple-choice items of bench/data/mc200.jsonl prints:
- log-likelihood: share of items whose predicted choice agrees, the largest difference of a choice's
  summed log-probability, and both wall times with their ratio;
- greedy generation of --gen prompts: share of identical texts and both wall times.
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

    out: dict[str, float] = {}
    results = {}
    for name, spec, opts in (("hf", f"hf:{folder}", {"dtype": args.dtype, "device": "cuda"}), ("vllm", f"vllm:{folder}", {"dtype": args.dtype})):
        model = load_model(spec, **opts)
        start = time.perf_counter()
        scored = model.loglikelihood(ll)
        t_ll = time.perf_counter() - start
        start = time.perf_counter()
        texts = model.generate(gen)
        t_gen = time.perf_counter() - start
        results[name] = (scored, texts)
        out[f"{name}_loglikelihood_s"], out[f"{name}_generate_s"] = t_ll, t_gen
        del model
        torch.cuda.empty_cache()
    (hf_ll, hf_gen), (vl_ll, vl_gen) = results["hf"], results["vllm"]
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
