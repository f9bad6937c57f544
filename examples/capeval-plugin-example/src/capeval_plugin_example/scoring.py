"""The `contains_answer` scorer: the target number appears in the output."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from capeval.types import Response, Sample, Score


def contains_answer(sample: Sample, responses: Sequence[Response], task: Any) -> Score:
    text = responses[0].text or "" if responses else ""
    numbers = re.findall(r"-?\d+", text)
    hit = str(sample.target) in numbers
    return Score(sample.id, sample.task, {"contains": float(hit)}, numbers[-1] if numbers else None, bool(numbers), sample.target)
