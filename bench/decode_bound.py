"""How fast greedy generation can be on this machine: the matrix products alone, measured.

Every decoding step of a transformer multiplies each row's hidden state by every weight matrix of
the model once: on CPU those products are most of a step (76% in capeval's 0-shot profile,
bench/README.md). This script times exactly those products for the bundled SmolLM2 (its own
weights, in forward order, the output layer last, inputs of 1 to 16 rows; the 540 MB of weights
do not stay in cache from one step to the next, so neither do they here) and, for a run that must
decode `--row-tokens` tokens in rows of at most `--batch` at a time and prefill `--prompt-tokens`,
prints the least time the products alone take, and the largest speed-up over `--peer-seconds`
(lm-eval's measured time for the same run) that any batch-`--batch` scheduler could reach without
guessing tokens: every step full, nothing but the matrix products. Not a test.

Defaults: the 0-shot run of gen_vs_lm_eval.py (48 answers, 3,974 decoded tokens, 1,716 prompt
tokens, the longest answer 192 tokens) and lm-eval's 84.7 s from its run of 2026-11-26.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def product_seconds(linears: list, rows: int, repeats: int) -> float:
    """Least time of `repeats` passes through every linear layer with `rows` input rows."""
    import torch

    inputs = {m.in_features: torch.randn(rows, m.in_features) for m in linears}
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first pass warms the allocator up
            start = time.perf_counter()
            for m in linears:
                m(inputs[m.in_features])
            best = min(best, time.perf_counter() - start)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--row-tokens", type=int, default=3974, help="tokens the run decodes, all rows together")
    ap.add_argument("--prompt-tokens", type=int, default=1716, help="prompt tokens the run prefills")
    ap.add_argument("--longest", type=int, default=192, help="the longest answer, in tokens")
    ap.add_argument("--peer-seconds", type=float, default=84.7, help="the peer's measured time for the run")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from capeval.models import load_model

    model = load_model("smollm2-135m-instruct", batch_size=args.batch)
    head = model.model.get_output_embeddings()
    body = [m for m in model.model.modules() if isinstance(m, torch.nn.Linear) and m is not head]
    print(f"{len(body)} linear layers + the output layer ({head.out_features} words); threads={args.threads}")
    step = {}
    for rows in (1, 2, 4, 8, args.batch):
        step[rows] = product_seconds([*body, head], rows, args.repeats)
        print(f"  one decoding step of {rows:2d} rows: {step[rows] * 1e3:6.1f} ms of matrix products")
    chunk = 256  # prompt tokens at a time: large enough for the products' full speed
    per_prompt_token = product_seconds(body, chunk, max(1, args.repeats // 2)) / chunk
    print(f"  prefill: {per_prompt_token * 1e3:.2f} ms per prompt token ({chunk} at a time, no output layer)")

    steps = max(args.longest, -(-args.row_tokens // args.batch))
    decode = steps * step[args.batch]
    prefill = args.prompt_tokens * per_prompt_token
    bound = decode + prefill
    print(f"\nrun: {args.row_tokens} decoded tokens, {args.prompt_tokens} prompt tokens, batch {args.batch}")
    print(f"  at least {steps} steps (full batches, and no fewer than the longest answer's {args.longest})")
    print(f"  matrix products alone: {decode:.1f} s decoding + {prefill:.1f} s prefill = {bound:.1f} s")
    print(f"  peer {args.peer_seconds:.1f} s: no batch-{args.batch} schedule without guessed tokens is more than "
          f"{args.peer_seconds / bound:.2f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
