"""LLM-as-a-judge: recipes (single, multi-reference, point-deduction, pairwise, reference-guided)."""
