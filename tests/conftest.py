"""Shared test setup: offline hub, a per-test store, and the bundled SmolLM2 model loaded once."""

from __future__ import annotations

import os

# Hub look-ups hang here; every loader must work from local files or packaged data.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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
