"""Prompt text and tokens shared by the local backends (transformers, vLLM): chat templates, and
context / continuation token splits made as lm-evaluation-harness makes them, so that every backend
scores exactly the same tokens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from capeval.errors import ModelError
from capeval.types import Message


class PromptTokens:
    """Mixin: needs `tokenizer` (a transformers tokenizer), `chat_template` (None, True, False or a
    Jinja string) and `model_id`; call `setup_tokens` once the tokenizer is loaded."""

    tokenizer: Any
    chat_template: bool | str | None
    model_id: str

    def setup_tokens(self, tokenizer: Any) -> None:
        self.prefix_token_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self._bos_text = tokenizer.bos_token or None

    def render(self, prompt: str | Sequence[Message]) -> str:
        """The text the model sees: plain prompts as they are, chat messages through the template."""
        if isinstance(prompt, str) and self.chat_template is not True:
            return prompt
        if self.chat_template is False:
            raise ModelError(
                f"{self.model_id} was loaded with chat_template=False, so it cannot take chat messages",
                "send plain-text prompts (no --chat) or load the model with its chat template",
            )
        template = self.chat_template if isinstance(self.chat_template, str) else None
        if template is None and not self.tokenizer.chat_template:
            raise ModelError(
                f"{self.model_id} has no chat template, so it cannot take chat messages",
                "use a plain-text prompt (no --chat), or pass chat_template='<jinja template>'",
            )
        if isinstance(prompt, str):
            messages = [{"role": "user", "content": prompt}]
        else:
            messages = [{"role": m.role, "content": m.content} for m in prompt]
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, chat_template=template
        )
        return str(text)

    def encode(self, text: str) -> list[int]:
        """Token ids as lm-evaluation-harness makes them: the tokenizer's default special tokens,
        except that text which already starts with the BOS token (a rendered chat) gets none."""
        add = not (self._bos_text and text.startswith(self._bos_text))
        return list(self.tokenizer.encode(text, add_special_tokens=add))

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context tokens, continuation tokens), split as lm-eval does: trailing whitespace of the
        context moves to the continuation, the joined text is encoded once and cut at the context's
        length, so the continuation's tokens are those the model would see in the joined text."""
        return self.encode_choices(context, [continuation])[0]

    def encode_choices(self, context: str, continuations: Sequence[str]) -> list[tuple[list[int], list[int]]]:
        """encode_pair for several continuations of one context (the context is encoded once)."""
        if not context:
            pairs = []
            for continuation in continuations:
                cont = list(self.tokenizer.encode(continuation, add_special_tokens=False))
                if cont and cont[0] == self.prefix_token_id:
                    pairs.append((cont[:1], cont[1:]))
                else:
                    pairs.append(([self.prefix_token_id], cont))
            return pairs
        n_spaces = len(context) - len(context.rstrip())
        moved = context[len(context) - n_spaces :]
        context = context[: len(context) - n_spaces]
        ctx = self.encode(context)
        return [(ctx, self.encode(context + moved + c)[len(ctx) :]) for c in continuations]
