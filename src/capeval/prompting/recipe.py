"""Prompt recipes: zero/few-shot, chain-of-thought, role and system prompts, chat or plain completion.

The recipe is the same for every model: a fair comparison uses one prompt. What a model's chat
template does with the messages is the backend's business (and part of its model id).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from capeval.types import Message, Sample

COT_TRIGGER = "Let's think step by step."  # Kojima et al. 2022, arXiv 2205.11916


@dataclass(frozen=True)
class PromptConfig:
    """How to turn samples into prompts; chosen on the command line, identical for every model.

    shots: number of exemplars (None: the task's default). cot: chain of thought (few-shot
    rationales where the task has them, else the zero-shot trigger). system: a system / role
    prompt. chat: send chat messages (the backend applies its chat template) instead of plain text.
    """

    shots: int | None = None
    cot: bool = False
    system: str | None = None
    chat: bool = False
    seed: int = 1234
    variant: int = 0


@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt ready for a Request: `prompt` (str or messages) and the shared few-shot prefix."""

    prompt: str | tuple[Message, ...]
    shared_prefix: str | None = None

    @property
    def text(self) -> str:
        """The exact prompt as stored for audit (messages flattened as `role: content`)."""
        if isinstance(self.prompt, str):
            return self.prompt
        return "\n".join(f"[{m.role}] {m.content}" for m in self.prompt)


@dataclass(frozen=True)
class Turn:
    """One question (`text`) with its answer (`answer`, empty for the item being asked)."""

    text: str
    answer: str = ""


@dataclass(frozen=True)
class PromptLayout:
    """The task-side format: how questions and answers are joined into one prompt."""

    description: str = ""
    answer_prefix: str = ""  # written after the question, before the answer (e.g. "Answer:")
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    extra: dict[str, str] = field(default_factory=dict)


def select_exemplars(pool: Sequence[Sample], k: int, seed: int, exclude_id: str | None = None) -> list[Sample]:
    """k exemplars drawn with a fixed seed: the same exemplars for every model and every item.

    The draw depends only on (pool, k, seed), so items share one prefix and its KV cache; an item
    that is itself in the pool (few-shot from the evaluated split) gets the next pool item instead.
    """
    if k <= 0 or not pool:
        return []
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    chosen = [pool[i] for i in order[: k + 1] if pool[i].id != exclude_id]
    return chosen[:k]


def render(
    turns: Sequence[Turn],
    question: Turn,
    layout: PromptLayout,
    config: PromptConfig,
) -> RenderedPrompt:
    """Join exemplars and the question into a plain-text prompt or a list of chat messages.

    Plain text: description, then each exemplar as question + answer prefix + delimiter + answer,
    then the question and the answer prefix. The exemplar part is returned as `shared_prefix`.
    Chat: exemplars become alternating user / assistant turns (the multi-turn few-shot format),
    after the system prompt.
    """
    cot_suffix = f" {COT_TRIGGER}" if config.cot and not any(t.answer for t in turns) else ""

    def ask(t: Turn) -> str:
        q = t.text
        if layout.answer_prefix:
            q = f"{q}\n{layout.answer_prefix}" if not q.endswith("\n") else f"{q}{layout.answer_prefix}"
        return q

    if not config.chat:
        head = ""
        if config.system:
            head += config.system.rstrip() + "\n\n"
        if layout.description:
            head += layout.description.rstrip() + "\n\n"
        shots = "".join(
            ask(t) + layout.target_delimiter + t.answer + layout.fewshot_delimiter for t in turns
        )
        prefix = head + shots
        prompt = prefix + ask(question) + cot_suffix
        return RenderedPrompt(prompt=prompt, shared_prefix=prefix or None)

    messages: list[Message] = []
    if config.system:
        messages.append(Message("system", config.system))
    for i, t in enumerate(turns):
        text = ask(t)
        if i == 0 and layout.description:
            text = layout.description.rstrip() + "\n\n" + text
        messages.append(Message("user", text))
        messages.append(Message("assistant", t.answer))
    text = ask(question) + cot_suffix
    if not turns and layout.description:
        text = layout.description.rstrip() + "\n\n" + text
    messages.append(Message("user", text))
    return RenderedPrompt(prompt=tuple(messages))


def with_shots(config: PromptConfig, default: int) -> PromptConfig:
    return config if config.shots is not None else replace(config, shots=default)
