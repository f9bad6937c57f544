"""CrossEval's task entry in capeval.tasks (registers `crosseval`); the benchmark lives in capeval.crosseval."""

from capeval.crosseval.references import ReferenceRow, blank_cell, read_references, reference_slots
from capeval.crosseval.task import CrossEvalTask, crosseval, crosseval_breakdown, judge_samples

__all__ = [
    "CrossEvalTask",
    "ReferenceRow",
    "blank_cell",
    "crosseval",
    "crosseval_breakdown",
    "judge_samples",
    "read_references",
    "reference_slots",
]
