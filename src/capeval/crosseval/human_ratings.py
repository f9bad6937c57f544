"""CrossEval's rated references as judge-check data: each reference rated by the judge with the others as context."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from capeval.crosseval.references import N_REFERENCES, reference_slots
from capeval.errors import DatasetError
from capeval.judge.check.data import RatedResponse
from capeval.judge.core import JudgeItem, Reference


def crosseval_references(row: Mapping[str, Any]) -> dict[int, Reference]:
    """Reference slot (1..3) -> the reference with its human ratings; blank slots are left out."""
    try:
        slots = reference_slots(row)
    except ValueError as e:
        raise DatasetError(f"row {row.get('prompt_id')}: {e}") from None
    return {i: Reference(r.response, r.ratings, r.explanations) for i, r in slots.items()}


def rotation(slot: int, n_slots: int = N_REFERENCES) -> list[int]:
    """The other reference slots in CrossEval's rotation order: for slot i, (i mod 3)+1 first, then the next."""
    return [((slot - 1 + k) % n_slots) + 1 for k in range(1, n_slots)]


def crosseval_rated(rows: Sequence[Mapping[str, Any]]) -> list[RatedResponse]:
    """Every rated reference response of every row, with the other references (in rotation order) as context.

    The judge never sees the human ratings of the response it rates."""
    out: list[RatedResponse] = []
    for row in rows:
        refs = crosseval_references(row)
        capability = str(row.get("capability") or "all")
        for slot, ref in refs.items():
            if not ref.ratings or not ref.response.strip():
                continue
            others = tuple(refs[s] for s in rotation(slot) if s in refs)
            item = JudgeItem(
                id=f"{row['prompt_id']}/response_{slot}",
                prompt=str(row["prompt"]),
                response=ref.response,
                references=others,
                capability=capability,
                metadata={"prompt_id": row["prompt_id"], "slot": slot, "difficulty": row.get("difficulty")},
            )
            out.append(RatedResponse(item, ref.ratings, capability, slot))
    return out
