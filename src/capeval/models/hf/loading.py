"""Loading a transformers causal LM: local folders, hub ids and GGUF files, and the model's identity."""

from __future__ import annotations

import inspect
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capeval.errors import ModelError
from capeval.models.fingerprint import settings_tag, source_identity
from capeval.models.tokenization import PromptTokens

DEFAULT_BATCH_SIZE = 16


def torch_module() -> Any:
    """torch, imported when a model is used (importing capeval stays fast)."""
    import torch

    return torch


def error_text(e: BaseException) -> str:
    """A failed request's error as answered in its Response."""
    return f"{type(e).__name__}: {e}"


@dataclass
class ScoringStats:
    """What the last loglikelihood or generate call did; tests and the benchmark read it (a
    generation row is one request)."""

    rows: int = 0
    forward_passes: int = 0
    prefix_tokens_reused: int = 0
    prefix_computations: int = 0
    rows_with_reuse: int = 0
    shared_prefix_fallbacks: int = 0
    # continuous batching that failed part-way, its unanswered rows then run in static batches
    continuous_fallbacks: int = 0
    # speculative greedy decoding (prompt lookup): tokens guessed, and guesses the model confirmed
    draft_tokens: int = 0
    accepted_draft_tokens: int = 0
    # decoding steps run as one CUDA graph replay (graph_decode.py)
    graph_replays: int = 0


class LoadedModel(PromptTokens):
    """The loaded tokenizer and model, with what scoring and generation read from them (see
    `HFModel` for the arguments)."""

    def __init__(
        self,
        spec: str,
        batch_size: int = DEFAULT_BATCH_SIZE,
        dtype: str | None = None,
        device: str | None = None,
        max_length: int | None = None,
        chat_template: bool | str | None = None,
        revision: str | None = None,
        gguf_file: str | None = None,
        trust_remote_code: bool = False,
        model_id: str | None = None,
        fast_paths: bool = True,
        concurrency: int | None = None,
        dola_layers: str | list[int] | None = None,
        dola_repetition_penalty: float = 1.2,
        dola_final_norm: bool = False,
        cuda_graphs: bool | None = None,
    ) -> None:
        torch = torch_module()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.batch_size = max(1, int(batch_size))
        self.fast_paths = fast_paths
        if cuda_graphs not in (None, True, False):
            raise ModelError(f"cuda_graphs must be true, false or null, not {cuda_graphs!r}")
        self.cuda_graphs = cuda_graphs
        self._slots: Any = None  # graph_decode.SlotBatch kept for the next generate call
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or ("float32" if self.device == "cpu" else "bfloat16")
        if dtype != "auto" and not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ModelError(f"unknown dtype '{dtype}'", "use float32, bfloat16, float16 or auto")
        self.dtype = dtype
        source, gguf_file = resolve_source(spec, gguf_file)
        self.source = source
        self.gguf_file = gguf_file
        load_kwargs: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
        if gguf_file:
            load_kwargs["gguf_file"] = gguf_file
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, **load_kwargs)
            self.model = AutoModelForCausalLM.from_pretrained(
                source, dtype=dtype if dtype == "auto" else getattr(torch, dtype), **load_kwargs
            )
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise ModelError(
                f"cannot load model '{spec}': {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                load_hint(spec),
            ) from None
        self.model.to(self.device)  # type: ignore[arg-type]
        self.model.eval()
        # the vocabulary's output layer a slice at a time on CPU (output_layer.py: same logits, faster)
        from capeval.models.hf.output_layer import slice_output_layer

        self.sliced_output_layer = fast_paths and slice_output_layer(self.model)
        self.dola: Any = None
        if dola_layers is not None:
            from capeval.interpret.dola import DoLa, DoLaSettings, parse_layers

            settings = DoLaSettings(parse_layers(dola_layers), float(dola_repetition_penalty), bool(dola_final_norm))
            self.dola = DoLa(self.model, settings)
        self.chat_template = chat_template
        if chat_template is True and not self.tokenizer.chat_template:
            raise ModelError(
                f"model '{spec}' has no chat template", "pass chat_template=None or a Jinja template string"
            )
        config = self.model.config
        self.max_length = int(
            max_length
            or getattr(config, "max_position_embeddings", None)
            or min(self.tokenizer.model_max_length, 4096)
        )
        tok = self.tokenizer
        self.pad_id = next(i for i in (tok.pad_token_id, tok.eos_token_id, 0) if i is not None)
        self.setup_tokens(tok)
        self.eos_ids = eos_ids(self.model, tok)
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._has_logits_to_keep = "logits_to_keep" in params
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        # continuous batching joins rows' caches column by column: plain full-attention layers only
        layers = DynamicCache(config=config).layers
        self._joinable_cache = bool(layers) and all(type(layer) is DynamicLayer for layer in layers)
        # rows that share a few-shot prefix read its keys once per step (models/hf/prefix_attention.py)
        self._shared_prefix_attention = (
            self._joinable_cache and self.device == "cpu" and getattr(config, "_attn_implementation", None) == "sdpa"
        )
        if self._shared_prefix_attention:
            from capeval.models.hf import prefix_attention

            self.model.set_attn_implementation(prefix_attention.NAME)
            # models that do not dispatch attention through transformers' interface keep their own
            self._shared_prefix_attention = config._attn_implementation == prefix_attention.NAME
        self._prefix_lru: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._prefix_token_memo: dict[str, tuple[int, ...]] = {}
        self.last_stats = ScoringStats()
        # after loading: a hub id's snapshot commit is known once transformers has fetched it
        source_id = source_identity(source, revision, gguf_file)
        base_id = model_id or "hf:" + source_id.name
        options = settings_tag(str(dtype), chat_template, max_length)
        if self.dola is not None:
            options += "|" + self.dola.settings.tag
        if not self._joinable_cache:
            # sliding-window models scored rows after a cached prefix wrongly before 2026-11-26 (see
            # kv.same_length_after_prefix): a new id, so their stored answers are not reused
            options += "|sw-exact"
        self.model_id = base_id + source_id.tag() + options
        self.identity = source_id.record(self.model_id, base_id + options)


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """The token ids that end a generation: the generation config's and the tokenizer's EOS."""
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    for value in (getattr(gen, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return ids


def resolve_source(spec: str, gguf_file: str | None) -> tuple[str, str | None]:
    """(folder or hub id, GGUF file name) from a model spec."""
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"GGUF file not found: {path}", "check the path; GGUF files end in .gguf")
        return str(path.parent), path.name
    if path.is_dir():
        if gguf_file is None and not (path / "config.json").exists():
            ggufs = sorted(p.name for p in path.glob("*.gguf"))
            if len(ggufs) == 1:
                return str(path), ggufs[0]
            if not ggufs:
                raise ModelError(
                    f"{path} holds no model: no config.json and no .gguf file",
                    "point at a folder saved with save_pretrained(), or at a .gguf file",
                )
            raise ModelError(f"{path} holds several GGUF files", f"name one: {path / ggufs[0]}")
        return str(path), gguf_file
    if spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or path.exists():
        raise ModelError(
            f"model path not found: {path}", "give a model folder, a .gguf file or a hub id org/name"
        )
    return spec, gguf_file


def load_hint(spec: str) -> str:
    if Path(spec).expanduser().exists():
        return "the folder or file exists but transformers cannot read it as a causal LM"
    return (
        f"offline? download it where you have internet (huggingface-cli download {spec}) and pass the "
        "local folder, or use a bundled model (capeval models)"
    )
