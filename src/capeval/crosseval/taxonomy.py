"""CrossEval's capability taxonomy (arXiv 2409.19951): 7 individual capabilities, 7 cross ("A & B")."""

from __future__ import annotations

INDIVIDUAL_CAPABILITIES = (
    "English",
    "Reasoning",
    "Coding",
    "Image Recognition",
    "Tool Use",
    "Long Context",
    "Spanish",
)
CROSS_CAPABILITIES = (
    "Coding & Reasoning",
    "Image Recognition & Reasoning",
    "Tool Use & Coding",
    "Tool Use & Reasoning",
    "Long Context & Coding",
    "Spanish & Reasoning",
    "Spanish & Image Recognition",
)
DIFFICULTIES = ("easy", "medium", "hard")


def is_cross(capability: str) -> bool:
    """Cross capabilities are named "A & B" (the authors' convention)."""
    return "&" in capability
