"""Headless Debian Chromium for browser tests, driven by Playwright: the launcher the report and web tests share."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("CAPEVAL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Offline and quiet: no GPU, no sandbox (containers), and none of the browser's own network calls.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"no Chromium at {CHROMIUM}: apt-get install chromium (or set CAPEVAL_CHROMIUM) to run the browser test",
)


def launch_chromium() -> Iterator[Any]:
    """Yield a Playwright Browser on Debian's Chromium; use as the body of a pytest fixture."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the browser comes from apt)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
