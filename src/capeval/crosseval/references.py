"""CrossEval's rated references: each row's response_i with its human ratings (1-5) and explanations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from capeval.tasks.sources import blank_cell

N_REFERENCES = 3


@dataclass(frozen=True)
class ReferenceRow:
    """One reference response of a row with its human ratings (1-5) and explanations."""

    response: str
    ratings: tuple[float, ...]
    explanations: tuple[str, ...]


def reference_slots(row: Mapping[str, Any]) -> dict[int, ReferenceRow]:
    """Reference slot (1..3) -> response_i with response_i_human_j_rating / _explanation (j = 1, 2).

    A reference without text is left out; a rating cell that is blank is skipped; a rating that is
    not a number in 1..5 makes the row malformed (ValueError)."""
    refs: dict[int, ReferenceRow] = {}
    for i in range(1, N_REFERENCES + 1):
        text = row.get(f"response_{i}")
        if blank_cell(text):
            continue
        ratings: list[float] = []
        explanations: list[str] = []
        for j in (1, 2):
            r = row.get(f"response_{i}_human_{j}_rating")
            if blank_cell(r):
                continue
            value = float(str(r))
            if not 1 <= value <= 5:
                raise ValueError(f"response_{i}_human_{j}_rating={r!r} is outside 1..5")
            ratings.append(value)
            e = row.get(f"response_{i}_human_{j}_explanation")
            explanations.append("" if blank_cell(e) else str(e))
        refs[i] = ReferenceRow(str(text), tuple(ratings), tuple(explanations))
    return refs


def read_references(row: Mapping[str, Any]) -> tuple[ReferenceRow, ...]:
    """The row's references in slot order, blank slots left out (see `reference_slots`)."""
    return tuple(reference_slots(row).values())
