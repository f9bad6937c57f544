"""Task suites: `--tasks instructeval` and `--tasks core` expand to the benchmarks below."""

from __future__ import annotations

from capeval.tasks.registry import register_suite

# INSTRUCTEVAL's problem-solving and alignment benchmarks with its settings (MMLU 5-shot, BBH
# 3-shot, DROP 3-shot, CRASS 3-shot, HumanEval 0-shot, HHH); IMPACT needs a judge and is separate.
INSTRUCTEVAL = ["mmlu", "bbh", "drop", "crass", "humaneval", "hhh"]
# The benchmarks LLM papers report most: knowledge (English, Chinese), math, code, expert QA.
CORE = ["mmlu", "cmmlu", "ceval", "gsm8k", "humaneval", "gpqa_main", "gpqa_diamond", "math"]

register_suite("instructeval", INSTRUCTEVAL)
register_suite("core", CORE)
