"""A tiny random Llama with its own byte-level BPE tokenizer and a chat template, saved like any
checkpoint (save_pretrained), for tests that need a real model folder in milliseconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CORPUS = [
    "Request: Write a poem about the sea. Which kind of task is this? Answer: A",
    "Each request below is followed by the kind of task it is. writing roleplay reasoning math coding",
    "extraction STEM knowledge humanities knowledge 1, 2, 3, 4, 5, 6, 7, 8, 9 the quick brown fox",
    "Answer: A Answer: B Answer: C Answer: D Answer: E Answer: F Answer: G Answer: H",
]


def _tokenizer() -> Any:
    """A byte-level BPE tokenizer (400 tokens) trained on CORPUS, with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>", chat_template=CHAT_TEMPLATE
    )


def _sizes(tokenizer: Any) -> dict[str, int]:
    """The config fields every tiny model shares: hidden size 32, 4 heads over 2 KV heads, its tokens."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def _save(folder: Path, model_class: Any, config: Any, tokenizer: Any, seed: int) -> Path:
    import torch

    torch.manual_seed(seed)
    model = model_class(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def build_tiny_llama(folder: Path, seed: int = 0) -> Path:
    """Save a 2-layer Llama (hidden size 32) and its tokenizer into `folder`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _tokenizer()
    config = LlamaConfig(**_sizes(tokenizer), num_hidden_layers=2, tie_word_embeddings=False)
    return _save(folder, LlamaForCausalLM, config, tokenizer, seed)


def build_tiny_gemma3(folder: Path, seed: int = 0, sliding_window: int = 8) -> Path:
    """Save a 4-layer Gemma 3 (three sliding-window layers of `sliding_window` positions, then one
    full-attention layer, as Gemma 3 interleaves them) with the tiny Llama's tokenizer into `folder`."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = _tokenizer()
    config = Gemma3TextConfig(
        **_sizes(tokenizer),
        num_hidden_layers=4,
        head_dim=8,
        sliding_window=sliding_window,
        layer_types=["sliding_attention"] * 3 + ["full_attention"],
    )
    return _save(folder, Gemma3ForCausalLM, config, tokenizer, seed)


def zero_output_and_embeddings(folder: Path) -> None:
    """Replace model.safetensors in place by the same weights with the embedding and output
    matrices zeroed (every logit equal): what `capeval run` then reports is this model's score."""
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        tensors[name] = tensors[name] * 0
    path.unlink()
    save_file(tensors, str(path), metadata={"format": "pt"})
