"""The `calc` backend: a "model" that computes the last `A + B` in its prompt (a worked example of a
backend; `calc:NAME` with any NAME)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from capeval.types import Request, Response


class CalcModel:
    def __init__(self, name: str, offset: int = 0) -> None:
        self.model_id = f"calc:{name}+{offset}"
        self.offset = offset

    def _answer(self, req: Request) -> str:
        prompt = req.prompt if isinstance(req.prompt, str) else req.prompt[-1].content
        sums = re.findall(r"(-?\d+)\s*\+\s*(-?\d+)", prompt)
        return str(int(sums[-1][0]) + int(sums[-1][1]) + self.offset) if sums else "I cannot tell."

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        return [Response(text=self._answer(r)) for r in requests]

    def loglikelihood(self, requests: Sequence[Request]) -> list[Response]:
        return [Response(error="the calc backend only generates") for _ in requests]


def load_calc(spec: str, offset: int = 0) -> CalcModel:
    """A calculator that answers A + B questions (`-o offset=N` makes it wrong by N)."""
    return CalcModel(spec, offset=offset)
