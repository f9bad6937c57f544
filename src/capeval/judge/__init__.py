"""LLM-as-a-judge: recipes (single, multi-reference, point-deduction, pairwise, reference-guided)."""

from capeval.judge.core import (
    EMPTY_RESPONSE,
    JudgeItem,
    Reference,
    Verdict,
    VerdictSummary,
    rating_to_100,
    run_judge,
    summarize,
)
from capeval.judge.parse import ParsedVerdict, parse_verdict, strip_quoted
from capeval.judge.recipes import JudgeRecipe, RecipeError, get_recipe, load_recipe_text, recipe_names

__all__ = [
    "EMPTY_RESPONSE",
    "JudgeItem",
    "JudgeRecipe",
    "ParsedVerdict",
    "RecipeError",
    "Reference",
    "Verdict",
    "VerdictSummary",
    "get_recipe",
    "load_recipe_text",
    "parse_verdict",
    "rating_to_100",
    "recipe_names",
    "run_judge",
    "strip_quoted",
    "summarize",
]
