"""Greedy DoLa by transformers' own generate(dola_layers=...), run in a subprocess (the reference).

Reads a JSON job on stdin: {"weights": folder, "prompts": [[token ids]...], "layers": [...],
"max_new_tokens": n, "repetition_penalty": r}; prints one JSON list of generated ids per
(prompt, layers) pair, prompt-major. Exits with code 3 when this transformers cannot run DoLa
(transformers >= 4.56 moved it to the hub repo transformers-community/dola, which needs the hub).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.generation.utils import GenerationMixin

UNAVAILABLE = 3


def load(weights: str) -> tuple[object, bool]:
    """The model and whether its generate() still has DoLa built in."""
    major = int(transformers.__version__.split(".")[0])
    config = AutoConfig.from_pretrained(weights)
    raw = json.loads(Path(weights, "config.json").read_text())
    rope = raw.get("rope_parameters") or {}
    if major < 5 and "rope_theta" in rope:
        # weights saved by transformers 5 keep rope_theta under rope_parameters, which 4.x ignores
        config.rope_theta = rope["rope_theta"]
    dtype_kw = {"dtype": torch.float32} if major >= 5 else {"torch_dtype": torch.float32}
    model = AutoModelForCausalLM.from_pretrained(weights, config=config, **dtype_kw).eval()
    return model, hasattr(GenerationMixin, "_dola_decoding")


def main() -> None:
    job = json.loads(sys.stdin.read())
    model, built_in = load(job["weights"])
    extra = {} if built_in else {"custom_generate": "transformers-community/dola", "trust_remote_code": True}
    out = []
    for ids in job["prompts"]:
        for layers in job["layers"]:
            prompt = torch.tensor([ids])
            try:
                generated = model.generate(
                    prompt,
                    attention_mask=torch.ones_like(prompt),
                    dola_layers=layers,
                    repetition_penalty=job["repetition_penalty"],
                    do_sample=False,
                    max_new_tokens=job["max_new_tokens"],
                    pad_token_id=model.generation_config.eos_token_id,
                    **extra,
                )
            except Exception as e:  # the hub repo is not reachable offline
                if built_in:
                    raise
                print(f"transformers {transformers.__version__} cannot run DoLa here: {e}", file=sys.stderr)
                sys.exit(UNAVAILABLE)
            out.append(generated[0, len(ids) :].tolist())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
