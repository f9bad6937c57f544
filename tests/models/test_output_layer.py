"""The output layer computed over vocabulary slices on CPU (models/hf/output_layer.py): same logits."""

from __future__ import annotations

import pytest
import torch

from capeval.models.hf import output_layer

pytestmark = pytest.mark.slow


def test_bundled_model_output_layer_is_sliced_and_gives_the_same_logits_bit_for_bit(smollm2):
    head = smollm2.model.get_output_embeddings()
    assert smollm2.sliced_output_layer and "forward" in vars(head)  # the bundled SmolLM2 takes it
    torch.manual_seed(0)
    for rows in (1, 2, 16, 200):
        hidden = torch.randn(rows, head.in_features)
        with torch.inference_mode():
            assert torch.equal(head(hidden), torch.nn.functional.linear(hidden, head.weight))
    # vocabularies that are not a multiple of the slice (Llama 3's, Qwen 2's, GPT-2's)
    for vocab in (128256, 151936, 50257, 5 * output_layer.CHUNK + 7):
        linear = torch.nn.Linear(64, vocab, bias=False)
        assert output_layer.slice_output_layer(_Wrapper(linear))
        for shape in ((1, 64), (16, 64), (3, 40, 64)):
            x = torch.randn(shape)
            with torch.inference_mode():
                assert torch.equal(linear(x), torch.nn.functional.linear(x, linear.weight, linear.bias)), (vocab, shape)


def test_small_vocabularies_other_dtypes_and_layers_with_a_bias_keep_the_plain_layer():
    assert not output_layer.slice_output_layer(_Wrapper(torch.nn.Linear(8, 3 * output_layer.CHUNK, bias=False)))
    assert not output_layer.slice_output_layer(
        _Wrapper(torch.nn.Linear(8, 8 * output_layer.CHUNK, bias=False, dtype=torch.bfloat16))
    )
    # a bias: sliced, its logits differed in the last bit on one machine's CPU (output_layer.py)
    with_bias = torch.nn.Linear(8, 8 * output_layer.CHUNK)
    assert not output_layer.slice_output_layer(_Wrapper(with_bias)) and "forward" not in vars(with_bias)
    assert not output_layer.slice_output_layer(object())


class _Wrapper:
    def __init__(self, head: torch.nn.Linear) -> None:
        self.head = head

    def get_output_embeddings(self) -> torch.nn.Linear:
        return self.head
