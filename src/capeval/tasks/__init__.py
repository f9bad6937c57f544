"""Benchmarks: one file per task (or a YAML spec in specs/), found by the registry."""

from capeval.tasks.base import LETTERS, Task
from capeval.tasks.registry import expand, get_task, register_suite, register_task, task_names
from capeval.tasks.sources import Source

__all__ = ["LETTERS", "Source", "Task", "expand", "get_task", "register_suite", "register_task", "task_names"]
