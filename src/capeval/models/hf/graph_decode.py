"""Fixed-shape decoding steps for continuous batching, each step one CUDA graph replay on a GPU.

On a GPU a small model's decoding step costs the launching of its kernels one after another, not
their arithmetic: SmolLM2-135M takes ~20 ms a step on an H100 whatever the batch (bench/README.md).
A CUDA graph launches a whole recorded step at once, but replays fixed shapes at fixed addresses.
So here the batch is a fixed number of slots over a preallocated cache of `capacity` columns per
slot. Each slot has its own write column and rotary position (device tensors the step advances)
and a boolean mask over all its columns; a request takes a free slot once its prompt has been
prefilled (eagerly, the prefill's cache copied into the slot) and frees it when it ends. A step
feeds every slot one token, writes its key and value at the slot's column, attends to all
`capacity` columns (the unused ones masked) and takes the greedy pick on the device; the host reads
back one token per slot (and the scores of sampled rows).

The same step runs without a graph elsewhere: on CPU it is the tested seam of this path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

# Slot capacities are rounded up to a multiple of this, so that chunks of a run reuse one graph.
CAPACITY_STEP = 256
# Eager steps before a graph is recorded (cuBLAS and the allocator set themselves up on first use).
WARMUP_STEPS = 2


class GraphCaptureError(RuntimeError):
    """The model's step could not be recorded as a CUDA graph (an operation in its forward pass
    waits on the device, or is not allowed while recording)."""


class SlotLayer(DynamicLayer):
    """One layer's keys and values for every slot, [slots, heads, capacity, dim]: a step writes
    each slot's new column at that slot's `column` and the attention reads the whole buffer."""

    is_croppable = False

    def __init__(self, keys: Any, values: Any, index: Any, column: Any) -> None:
        super().__init__()
        self._k, self._v = keys, values
        self.keys, self.values = keys, values
        self._index, self._column = index, column
        self.is_initialized = True
        self.device = keys.device

    def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        # one new column per slot, each at its own place (no host sync: graph-safe)
        self._k[self._index, :, self._column] = key_states[:, :, -1]
        self._v[self._index, :, self._column] = value_states[:, :, -1]
        return self._k, self._v

    def get_seq_length(self) -> int:
        return int(self._k.shape[-2])

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return int(self._k.shape[-2]), 0

    def get_max_length(self) -> int:
        return int(self._k.shape[-2])


class SlotBatch:
    """`rows` decoding slots of `capacity` columns for one model; `graph`: record the step as a
    CUDA graph (on the first fill, while every slot is free) and replay it."""

    def __init__(self, model: Any, cache_kw: str, logits_to_keep: bool, rows: int, capacity: int, pad_id: int,
                 device: str, graph: bool) -> None:
        self.model, self.rows, self.capacity = model, rows, capacity
        self.graph = graph
        self.replays = 0
        self._cache_kw, self._logits_to_keep = cache_kw, logits_to_keep
        self._recorded: Any = None
        self.cache: Any = None
        self.ids = torch.full((rows, 1), pad_id, dtype=torch.long, device=device)
        self.positions = torch.zeros((rows, 1), dtype=torch.long, device=device)
        self.column = torch.zeros(rows, dtype=torch.long, device=device)
        self.live = torch.zeros(rows, dtype=torch.long, device=device)
        # a free slot attends to its column 0 alone (a row with nothing to attend to would be NaN)
        self.mask = torch.zeros((rows, capacity), dtype=torch.bool, device=device)
        self.mask[:, 0] = True
        self.index = torch.arange(rows, device=device)
        self._true = torch.ones((), dtype=torch.bool, device=device)  # a Python True would be copied in
        self.logits: Any = None
        self.picks: Any = None

    def fill(self, slots: Sequence[int], cache: Any, mask: Any, positions: Sequence[int]) -> None:
        """Put prefilled rows into free `slots`: row j of `cache` (a transformers cache of
        [len(slots), heads, width, dim] layers) and of `mask` ([len(slots), width]) goes to slot
        slots[j], whose next token is at rotary position positions[j]."""
        width = mask.shape[1]
        if width >= self.capacity:
            raise ValueError(f"a prompt of {width} columns does not fit slots of {self.capacity}")
        if self.cache is None:
            self._allocate(cache)
        at = torch.tensor(list(slots), dtype=torch.long, device=self.index.device)
        for layer, source in zip(self.cache.layers, cache.layers):
            layer.keys[at, :, :width] = source.keys
            layer.values[at, :, :width] = source.values
        row_mask = torch.zeros((len(slots), self.capacity), dtype=torch.bool, device=at.device)
        row_mask[:, :width] = mask.to(at.device).bool()
        self.mask[at] = row_mask
        self.column[at] = width
        self.positions[at] = torch.tensor(list(positions), dtype=torch.long, device=at.device).unsqueeze(1)
        self.live[at] = 1

    def free(self, slots: Sequence[int]) -> None:
        """Mark `slots` free: their columns are masked and no longer advanced."""
        at = torch.tensor(list(slots), dtype=torch.long, device=self.index.device)
        self.mask[at] = False
        self.mask[at, 0] = True
        self.column[at] = 0
        self.live[at] = 0

    def step(self, tokens: Sequence[int]) -> None:
        """Feed slot s the token tokens[s] (free slots: anything): afterwards `picks` holds each
        slot's greedy next token and `logits` its scores (device tensors, valid until the next step)."""
        self.ids.copy_(torch.tensor(list(tokens), dtype=torch.long).view(self.rows, 1))
        if self._recorded is not None:
            with torch.cuda.device(self.index.device):  # the model's GPU, also when it is not the current one
                self._recorded.replay()
            self.replays += 1
        else:
            self._body()

    def _allocate(self, like: Any) -> None:
        """The slot buffers, shaped as the layers of the prefill cache `like`; with `graph`, the
        step recorded now, while every slot is free (its warm-up steps change nothing then)."""
        cache = DynamicCache()
        layers: list[Any] = []
        for source in like.layers:
            heads, dim = source.keys.shape[1], source.keys.shape[-1]
            keys = torch.zeros((self.rows, heads, self.capacity, dim), dtype=source.keys.dtype, device=source.keys.device)
            values = torch.zeros((self.rows, heads, self.capacity, source.values.shape[-1]), dtype=source.values.dtype,
                                 device=source.values.device)
            layers.append(SlotLayer(keys, values, self.index, self.column))
        cache.layers = layers
        self.cache = cache
        if not self.graph:
            return
        try:
            with torch.cuda.device(self.index.device):
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(WARMUP_STEPS):
                        self._body()
                torch.cuda.current_stream().wait_stream(side)
                recorded = torch.cuda.CUDAGraph()
                with torch.cuda.graph(recorded, capture_error_mode="thread_local"):
                    self._body()
        except Exception as e:  # reported as what it is; the caller decodes without graphs
            raise GraphCaptureError(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
        self._recorded = recorded

    def _body(self) -> None:
        """One step over every slot (what the graph records)."""
        self.mask.index_put_((self.index, self.column), self._true)
        kwargs: dict[str, Any] = {"use_cache": True, self._cache_kw: self.cache}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        out = self.model(self.ids, attention_mask=self.mask[:, None, None, :], position_ids=self.positions, **kwargs)
        last = out.logits[:, -1]
        if self.logits is None:  # the first (eager) step allocates the outputs
            self.logits = torch.empty_like(last)
            self.picks = torch.empty(self.rows, dtype=torch.long, device=last.device)
        self.logits.copy_(last)
        self.picks.copy_(last.argmax(-1))
        self.column += self.live
        self.positions += self.live.unsqueeze(1)


def slot_capacity(columns: int) -> int:
    """Slot columns for rows needing `columns` at most: rounded up to CAPACITY_STEP."""
    return -(-(columns + 1) // CAPACITY_STEP) * CAPACITY_STEP
