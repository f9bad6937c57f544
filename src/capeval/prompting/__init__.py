"""Prompt recipes: the same prompt for every model, shots, chain of thought, system prompts, chat."""

from capeval.prompting.recipe import (
    COT_TRIGGER,
    PromptConfig,
    PromptLayout,
    RenderedPrompt,
    Turn,
    render,
    select_exemplars,
    with_shots,
)

__all__ = [
    "COT_TRIGGER",
    "PromptConfig",
    "PromptLayout",
    "RenderedPrompt",
    "Turn",
    "render",
    "select_exemplars",
    "with_shots",
]
