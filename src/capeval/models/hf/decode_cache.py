"""The KV cache of continuous batching: preallocated layers that rows join and leave."""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

# Columns a buffer has free at least whenever it is (re)allocated.
MIN_SPARE = 16


class GrowingLayer(DynamicLayer):
    """A full-attention cache layer for continuous batching whose keys and values are views of
    over-allocated buffers [rows, heads, capacity, dim]: a decoding step writes its column into
    spare capacity instead of concatenating (transformers' DynamicLayer copies the whole cache at
    every step), the capacity grows by half when full, and dropping leading columns only moves
    the view's start. Rows leave (`select_rows`) and join (`join`) by copying, once per change."""

    is_croppable = False

    def __init__(self, extra: int, keys: Any = None, values: Any = None) -> None:
        super().__init__()
        self.extra = extra
        self._start = self._end = 0
        if keys is not None:
            self._set(keys, values, extra)

    def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
        self._set(key_states[:, :, :0], value_states[:, :, :0], self.extra)

    def _set(self, keys: Any, values: Any, extra: int) -> None:
        """New buffers holding `keys`/`values`, with room for `extra` more columns (and for half of
        what they hold, so growth is amortised)."""
        self._allocate(keys.shape[0], keys, values, keys.shape[-2], extra)
        self._k[:, :, : self._end].copy_(keys)
        self._v[:, :, : self._end].copy_(values)
        self._view()

    def _allocate(self, rows: int, keys: Any, values: Any, used: int, extra: int) -> None:
        """Unset buffers for `rows` rows shaped as `keys`/`values` (heads, dim, dtype, device)."""
        heads, dim = keys.shape[1], keys.shape[-1]
        capacity = used + max(extra, used // 2, MIN_SPARE)
        self._k = torch.empty((rows, heads, capacity, dim), dtype=keys.dtype, device=keys.device)
        self._v = torch.empty((rows, heads, capacity, values.shape[-1]), dtype=values.dtype, device=values.device)
        self._start, self._end = 0, used
        self.is_initialized = True
        self.device = keys.device

    def _view(self) -> None:
        self.keys = self._k[:, :, self._start : self._end]
        self.values = self._v[:, :, self._start : self._end]

    def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        if self._end + n > self._k.shape[-2]:
            self._set(self.keys, self.values, n)
        self._k[:, :, self._end : self._end + n].copy_(key_states)
        self._v[:, :, self._end : self._end + n].copy_(value_states)
        self._end += n
        self._view()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._end - self._start

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_max_length(self) -> int:
        return -1

    def select_rows(self, index: Any) -> None:
        """Keep the rows `index` (in that order). Rows that keep their order move up in place, only
        their used columns copied (finished rows leave one by one, and the buffers' spare columns
        are most of them early on)."""
        rows = [int(i) for i in index]
        if rows != sorted(set(rows)):
            self._k, self._v = self._k.index_select(0, index), self._v.index_select(0, index)
            self._view()
            return
        used = slice(self._start, self._end)
        for to, source in enumerate(rows):
            if to != source:
                self._k[to, :, used].copy_(self._k[source, :, used])
                self._v[to, :, used].copy_(self._v[source, :, used])
        self._k, self._v = self._k[: len(rows)], self._v[: len(rows)]
        self._view()

    def batch_select_indices(self, indices: Any) -> None:
        self.select_rows(indices)

    def crop_left(self, first: int) -> None:
        """Drop the first `first` columns (no remaining row attends to them)."""
        self._start += first
        self._view()

    def join(self, other: GrowingLayer, width: int, extra: int) -> None:
        """Append `other`'s rows; each side is right-aligned at `width` columns, the columns on its
        left zero (masked: their attention weight is 0, but 0 * NaN from unset memory is not)."""
        sides: list[tuple[Any, Any]] = [(self.keys, self.values), (other.keys, other.values)]
        self._allocate(sum(k.shape[0] for k, _ in sides), self.keys, self.values, width, extra)
        row = 0
        for keys, values in sides:
            n, pad = keys.shape[0], width - keys.shape[-2]
            for buf, src in ((self._k, keys), (self._v, values)):
                buf[row : row + n, :, :pad].zero_()
                buf[row : row + n, :, pad:width].copy_(src)
            row += n
        self._view()


def growing_cache(config: Any, base: Any, rows: int, extra: int) -> Any:
    """A cache of GrowingLayers for `rows` rows, starting from the prefix cache `base` (None: empty),
    with room for `extra` more columns per layer before it grows."""
    cache = DynamicCache(config=config)
    layers: list[Any] = []
    for i in range(len(cache.layers)):
        if base is None:
            layers.append(GrowingLayer(extra))
            continue
        # the prefix is copied into every row's buffer once, here
        keys, values = base.layers[i].keys, base.layers[i].values
        layers.append(GrowingLayer(extra, keys.expand(rows, *keys.shape[1:]), values.expand(rows, *values.shape[1:])))
    cache.layers = layers
    return cache


def join_rows(cache: Any, mask: Any, new_cache: Any, new_mask: Any, extra: int) -> tuple[Any, Any]:
    """The running batch's cache (GrowingLayers) and mask with new rows appended: the shorter side
    is padded on the left with masked columns (keys hold their rotary positions already), with
    room for `extra` more columns."""
    if cache is None:
        return new_cache, new_mask
    width = max(mask.shape[1], new_mask.shape[1])
    for old, new in zip(cache.layers, new_cache.layers):
        old.join(new, width, extra)
    mask = torch.cat(
        [torch.nn.functional.pad(m, (width - m.shape[1], 0)) for m in (mask, new_mask)]
    )
    return cache, mask


def crop_left(cache: Any, first: int) -> None:
    """Drop the first `first` columns of every layer (no remaining row attends to them)."""
    for layer in cache.layers:
        layer.crop_left(first)
