"""Principle-based system prompts (CrossEval's case study, arXiv 2409.19951, section 6).

A writer model (usually the judge) reads the model's judged answers one at a time and keeps a list of
at most 10 concrete principles up to date (add, replace, revise or keep), as the authors'
principle_prompting does; the list then becomes the model's system prompt. Every writer call goes
through the engine, so it is cached in the store: a study that is stopped and started again replays
the updates it already paid for.

The prompts are the Jinja2 template file `principle_templates/principles.jinja` (blocks system, user,
reminder, apply); pass another file to change them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from capeval.errors import CapevalError
from capeval.judge.core import JUDGE_SEED, JUDGE_TEMPERATURE
from capeval.judge.recipes import _compile, _num
from capeval.types import GenerationParams, Message, Request

if TYPE_CHECKING:
    from capeval.engine import CacheMode
    from capeval.models.base import Model
    from capeval.store import Store

ACTIONS = ("ADD", "REPLACE", "REVISE", "KEEP")
END_MARKER = "[END OF PRINCIPLES]"
MAX_PRINCIPLES = 10
WRITER_MAX_TOKENS = 2048
# a long-context attachment is shown cut to this many characters: the writer studies the answer
ATTACHED_CHARS = 6000
_ACTION = re.compile(r"^\W*action\W*:?\W*(ADD|REPLACE|REVISE|KEEP)\b", re.IGNORECASE | re.MULTILINE)
_PRINCIPLE = re.compile(r"^#{2,4}\s*principle\s+(\d+)\s*[:.\-]?\s*(.*)$", re.IGNORECASE | re.MULTILINE)


class PrincipleError(CapevalError):
    """A principle template or principle text that cannot be used."""


def heading(capability: str) -> str:
    return f"## Principles for {capability}"


@dataclass(frozen=True)
class Lesson:
    """One judged answer the writer learns from. `rating` is the judge's score (None if unrated)."""

    id: str
    capability: str
    prompt: str
    response: str
    evaluation: str
    rating: float | None = None
    attached: str | None = None


@dataclass(frozen=True)
class Update:
    """The outcome of one writer call: the action taken and the full principle list after it.

    `parsed` is False when no usable list could be read after the retry; the list is then
    unchanged (`principles` is the list from before) and `error` says why."""

    lesson_id: str
    action: str | None
    principles: str
    parsed: bool
    attempts: int
    text: str
    error: str | None = None


@dataclass(frozen=True)
class PrincipleTemplate:
    """The writer's prompt and the system prompt built from principles (one template file)."""

    source: str
    label: str

    @classmethod
    def load(cls, path: str | Path | None = None) -> PrincipleTemplate:
        if path is None:
            file = Path(str(resources.files("capeval.judge") / "principle_templates" / "principles.jinja"))
        else:
            file = Path(path)
            if not file.is_file():
                raise PrincipleError(f"principle template not found: {file}", "copy capeval's principle_templates/principles.jinja and edit it")
        tpl = cls(file.read_text(encoding="utf-8"), str(file))
        missing = [b for b in ("user", "apply") if b not in tpl._template.blocks]
        if missing:
            raise PrincipleError(f"{file} lacks the block(s) {', '.join(missing)}", "see capeval's principle_templates/principles.jinja")
        return tpl

    @cached_property
    def _template(self) -> Any:
        return _compile(self.source, self.label)

    def _block(self, name: str, variables: dict[str, Any]) -> str:
        t = self._template
        if name not in t.blocks:
            return ""
        return "".join(t.blocks[name](t.new_context(variables))).strip()

    def writer_messages(self, lesson: Lesson, principles: str, index: int, total: int, max_principles: int) -> tuple[Message, ...]:
        attached = lesson.attached
        if attached and len(attached) > ATTACHED_CHARS:
            attached = attached[:ATTACHED_CHARS]
        variables = {
            "capability": lesson.capability,
            "index": index,
            "total": total,
            "prompt": lesson.prompt,
            "attached": attached,
            "response": lesson.response,
            "evaluation": lesson.evaluation,
            "rating": "" if lesson.rating is None else _num(lesson.rating),
            "scale_max": 5,
            "principles": principles,
            "max_principles": max_principles,
            "heading": heading(lesson.capability),
            "end_marker": END_MARKER,
        }
        messages = []
        system = self._block("system", variables)
        if system:
            messages.append(Message("system", system))
        messages.append(Message("user", self._block("user", variables)))
        return tuple(messages)

    def reminder(self, capability: str, error: str, max_principles: int) -> str:
        text = self._block(
            "reminder",
            {"error": error, "heading": heading(capability), "end_marker": END_MARKER, "max_principles": max_principles},
        )
        return text or f"Your previous answer could not be used ({error}). Follow the required format exactly."

    def system_prompt(self, capability: str, principles: str) -> str:
        """The model's system prompt for a principle list."""
        if not principles.strip():
            raise PrincipleError("no principles to build a system prompt from")
        return self._block("apply", {"capability": capability, "principles": principles.strip()})


def parse_update(text: str, capability: str, max_principles: int = MAX_PRINCIPLES) -> tuple[str, str]:
    """(action, principle list) from a writer's answer; ValueError says what is wrong.

    A KEEP with no list returns "" (the caller keeps its list). The list is the text from the "## Principles for <capability>" heading (case and spacing
    tolerated) to the end marker, and must hold 1..max_principles "### Principle N" sections."""
    actions = _ACTION.findall(text)
    if not actions:
        raise ValueError("no 'Action: ADD|REPLACE|REVISE|KEEP' line")
    head = re.search(r"^#{1,3}\s*principles\s+for\s+" + re.escape(capability).replace(r"\ ", r"\s+") + r"\s*:?\s*$",
                     text, re.IGNORECASE | re.MULTILINE)
    if head is None:
        raise ValueError(f"no '{heading(capability)}' heading")
    end = text.find(END_MARKER, head.end())
    if end < 0:
        end_ci = text.lower().find(END_MARKER.lower(), head.end())
        if end_ci < 0:
            raise ValueError(f"no '{END_MARKER}' line after the principles")
        end = end_ci
    body = text[head.end() : end].strip()
    n = count_principles(body)
    if n == 0:
        if actions[-1].upper() == "KEEP":
            return "KEEP", ""  # nothing to keep yet, or the list left out: unchanged either way
        raise ValueError("no '### Principle N:' sections")
    if n > max_principles:
        raise ValueError(f"{n} principles, more than the {max_principles} allowed")
    return actions[-1].upper(), body


def count_principles(text: str) -> int:
    return len(_PRINCIPLE.findall(text))


def writer_params(max_tokens: int = WRITER_MAX_TOKENS) -> GenerationParams:
    return GenerationParams(max_tokens=max_tokens, temperature=JUDGE_TEMPERATURE, seed=JUDGE_SEED)


def update_principles(
    writer: Model,
    lessons: Sequence[Lesson],
    principles: str = "",
    store: Store | None = None,
    template: PrincipleTemplate | None = None,
    max_principles: int = MAX_PRINCIPLES,
    max_parse_retries: int = 1,
    max_tokens: int = WRITER_MAX_TOKENS,
    start_index: int = 1,
    total: int | None = None,
    on_update: Callable[[Update], None] | None = None,
    cache: CacheMode = "use",
) -> tuple[str, list[Update]]:
    """Feed `lessons` to the writer one after another, each seeing the list the previous one left.

    Returns the final list and one Update per lesson. An answer that cannot be parsed is asked
    again with a reminder (`max_parse_retries` times); if it still fails the list stays as it was
    and the failure is recorded, never guessed."""
    from capeval.engine import execute

    template = template or PrincipleTemplate.load()
    total = total if total is not None else start_index + len(lessons) - 1
    updates: list[Update] = []
    for offset, lesson in enumerate(lessons):
        messages = template.writer_messages(lesson, principles, start_index + offset, total, max_principles)
        texts: list[str] = []
        error: str | None = None
        result: tuple[str, str] | None = None
        for attempt in range(max_parse_retries + 1):
            prompt = messages
            if attempt > 0:
                last = messages[-1]
                prompt = messages[:-1] + (Message(last.role, f"{last.content}\n\n{template.reminder(lesson.capability, error or '', max_principles)}"),)
            request = Request(
                kind="generate", prompt=prompt, params=writer_params(max_tokens), repeat=attempt,
                task=f"principles:{lesson.capability}", sample_id=lesson.id,
            )
            (resp,), _ = execute(writer, [request], store, cache=cache)
            if resp.error is not None:
                error = f"writer call failed: {resp.error}"
                texts.append("")
                break
            texts.append(resp.text or "")
            try:
                result = parse_update(resp.text or "", lesson.capability, max_principles)
                error = None
                break
            except ValueError as e:
                error = str(e)
        if result is not None:
            action, written = result
            principles = written or principles
            update = Update(lesson.id, action, principles, True, len(texts), texts[-1])
        else:
            update = Update(lesson.id, None, principles, False, len(texts), texts[-1] if texts else "", error)
        updates.append(update)
        if on_update is not None:
            on_update(update)
    return principles, updates
