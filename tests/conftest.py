"""Shared test setup: offline hub, a per-test store, and the bundled SmolLM2 model loaded once."""

from __future__ import annotations

import os

# Hub look-ups hang here; every loader must work from local files or packaged data.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The suite tests what CI runs: the CPU paths, in float32. On a machine with a GPU the transformers
# backend would default to CUDA in bfloat16 and the tests' reference computations (CPU tensors,
# exact equality with model.generate) would fail for that reason alone (seen on an H100,
# 2026-11-26). GPU runs are checked by bench/gen_vs_lm_eval.py and bench/mc_vs_lm_eval.py --device cuda.
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import pytest


@pytest.fixture(scope="session")
def smollm2():
    """The bundled SmolLM2-135M-Instruct through transformers, loaded once per test session."""
    from capeval.models import load_model

    return load_model("smollm2-135m-instruct")


@pytest.fixture
def store(tmp_path):
    from capeval.store import Store

    s = Store(tmp_path / "capeval.db")
    yield s
    s.close()
