"""The output layer over the vocabulary, computed a slice of the vocabulary at a time on CPU.

At a decoding step the output layer is one matrix product of a few rows with the whole embedding
matrix (SmolLM2: 49,152 x 576 floats, 113 MB; Gemma 3: 262,144 x 640). On CPU, MKL runs that
product faster over slices of 2,048 vocabulary rows, each of which stays in cache while it is
used, than in one call: at 16 rows 20.5 ms instead of 25.9 ms, at 1,600 rows (scoring) 1.19 s
instead of 1.26 s (measured on the 2-core project VM, 1 thread). Each logit is still the same dot
product over the hidden size, so the logits are equal bit for bit (tests/models/test_output_layer.py
checks it on the bundled model, and on vocabularies that are not a multiple of the slice).

Only layers without a bias are sliced: on the 16-core CPU of a GPU machine (2026-11-26, torch 2.11,
16 threads) a GPT-2-sized layer with a bias gave logits that differed in the last bit for one input
row when sliced, while the layers without one stayed equal at every shape tested (with a bias
the BLAS call adds it as its C operand; why that depended on the slice was not found there). The
output layers of Llama, Qwen, Gemma, Mistral and SmolLM2 have no bias.
"""

from __future__ import annotations

import types
from typing import Any

import torch

# vocabulary rows per slice: 2,048 x 576 floats is 4.7 MB (measured best of 1,024-8,192)
CHUNK = 2048


def _sliced_forward(self: Any, x: Any) -> Any:
    weight = self.weight
    # slices of CHUNK rows, the last one taking the remainder too: a slice of a few rows makes MKL
    # pick another kernel whose sums can differ in the last bit
    starts = list(range(0, weight.shape[0] - CHUNK + 1, CHUNK))
    ends = starts[1:] + [weight.shape[0]]
    return torch.cat([torch.nn.functional.linear(x, weight[a:b]) for a, b in zip(starts, ends)], dim=-1)


def slice_output_layer(model: Any) -> bool:
    """Compute `model`'s output layer slice by slice when it is a plain float32 linear layer on CPU,
    without a bias, whose vocabulary spans several slices; True when it does."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if type(head) is not torch.nn.Linear or head.weight.device.type != "cpu":
        return False
    if head.weight.shape[0] < 4 * CHUNK or head.weight.dtype != torch.float32 or head.bias is not None:
        return False
    head.forward = types.MethodType(_sliced_forward, head)  # type: ignore[method-assign]
    return True
