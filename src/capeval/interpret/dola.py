"""DoLa (Chuang et al., arXiv 2309.03883): decoding by contrasting an early-exit layer with the final one.

Per next-token position: early-exit logits are read from each candidate ("premature") layer by
applying the language-model head to that layer's hidden state; the candidate whose distribution is
furthest from the final layer's (Jensen-Shannon divergence) is contrasted with it:
score = log q_final - log q_premature, kept only for tokens passing the adaptive plausibility filter
(q_final >= alpha * max q_final, alpha = 0.1) and -inf elsewhere. Generation adds a repetition
penalty (1.2, as the paper recommends) and picks the best score.

The details follow transformers' `generate(dola_layers=...)` (the DoLa authors' implementation, now
the hub repo `transformers-community/dola`), so greedy output matches it token for token:
the "low"/"high" buckets, skipping the embedding layer when embeddings are tied, the head applied to
the raw residual stream (the authors' code applies no final norm there; `final_norm=True` adds it,
as in the logit lens), and the repetition penalty applied to prompt and generated tokens. One
deliberate difference: transformers picks one premature layer per step for the whole batch (the JS
divergence is averaged over the batch), capeval picks it per sequence, so a sequence's output does
not depend on what it was batched with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from capeval.errors import ModelError

ALPHA = 0.1  # the adaptive plausibility filter's relative threshold, as in the paper
REPETITION_PENALTY = 1.2
# A token the plausibility filter removes scores -inf in generation. In a log-likelihood sum that
# would tie every choice holding one such token, so scoring uses the DoLa authors' finite floor.
FILTERED_LOGLIKELIHOOD = -1000.0


def parse_layers(value: Any) -> str | tuple[int, ...]:
    """'low', 'high', or layer indices (a list, or a string such as '2,4,6' or '[2, 4, 6]')."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("low", "high"):
            return text
        text = text.strip("[]() ")
        try:
            value = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise ModelError(
                f"dola_layers must be 'low', 'high' or a list of layer indices, got '{value}'",
                "e.g. --model-option dola_layers=high or --model-option 'dola_layers=[2,4,6]'",
            ) from None
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(int(v) for v in value)
    raise ModelError(
        f"dola_layers must be 'low', 'high' or a non-empty list of layer indices, got {value!r}",
        "e.g. --model-option dola_layers=high or --model-option 'dola_layers=[2,4,6]'",
    )


def candidate_layers(layers: str | Sequence[int], num_layers: int, tie_word_embeddings: bool) -> list[int]:
    """The premature layers DoLa chooses from, numbered as `hidden_states` (0 = embeddings).

    transformers' buckets: with N <= 40 layers, 'low' is range(start, N // 2, 2) and 'high'
    range(N // 2, N, 2); deeper models use range(start, 20, 2) and range(N - 20, N, 2). `start` is 2
    when input and output embeddings are tied (an early exit from the embeddings would be near the
    identity), 1 for a 2-layer tied model, else 0.
    """
    n = num_layers
    if not tie_word_embeddings:
        start = 0
    elif n > 2:
        start = 2
    elif n == 2:
        start = 1
    else:
        start = 0
    if layers == "low":
        if start == n // 2:
            return [start]
        return list(range(start, n // 2, 2)) if n <= 40 else list(range(start, 20, 2))
    if layers == "high":
        return list(range(n // 2, n, 2)) if n <= 40 else list(range(n - 20, n, 2))
    if isinstance(layers, str):
        raise ModelError(f"unknown dola_layers '{layers}'", "use 'low', 'high' or a list of layer indices")
    bad = [i for i in layers if not 0 <= i < n]
    if bad:
        # transformers drops such indices silently; a typo should not change the method unseen
        raise ModelError(
            f"dola_layers {bad} out of range: premature layers are 0 (embeddings) to {n - 1}",
            f"this model has {n} layers; layer {n} is the final one DoLa contrasts with",
        )
    return list(layers)


def jensen_shannon(final_logits: Any, premature_logits: Any) -> Any:
    """JS divergence (mean over the vocabulary, as transformers computes it) between the final
    layer's distribution [..., V] and each premature layer's [L, ..., V]; returns [L, ...]."""
    import torch.nn.functional as F

    p_final = F.softmax(final_logits, dim=-1)
    p_premature = F.softmax(premature_logits, dim=-1)
    mean = 0.5 * (p_final[None] + p_premature)
    kl_final = F.kl_div(F.log_softmax(final_logits, dim=-1)[None], mean, reduction="none").mean(-1)
    kl_premature = F.kl_div(F.log_softmax(premature_logits, dim=-1), mean, reduction="none").mean(-1)
    return 0.5 * (kl_final + kl_premature)


def plausibility_mask(final_logprobs: Any, alpha: float = ALPHA) -> Any:
    """True where a token fails the adaptive plausibility filter: q_final < alpha * max q_final."""
    threshold = final_logprobs.max(dim=-1, keepdim=True).values + math.log(alpha)
    return final_logprobs < threshold


def contrast(final_logits: Any, premature_logits: Any, alpha: float = ALPHA) -> Any:
    """log q_final - log q_premature where the plausibility filter passes, -inf elsewhere ([..., V])."""
    final = final_logits.float().log_softmax(dim=-1)
    premature = premature_logits.float().log_softmax(dim=-1)
    scores = final - premature
    return scores.masked_fill(plausibility_mask(final, alpha), float("-inf"))


def apply_repetition_penalty(scores: Any, histories: Sequence[Sequence[int]], penalty: float) -> Any:
    """CTRL's penalty as transformers applies it: every token already in the sequence (prompt
    included) has a negative score multiplied and a positive one divided by `penalty`."""
    import torch

    if penalty == 1.0:
        return scores
    scores = scores.clone()
    for row, seen in enumerate(histories):
        if not seen:
            continue
        ids = torch.tensor(sorted(set(seen)), dtype=torch.long, device=scores.device)
        picked = scores[row, ids]
        scores[row, ids] = torch.where(picked < 0, picked * penalty, picked / penalty)
    return scores


@dataclass(frozen=True)
class DoLaSettings:
    """What a DoLa model computes; `tag` goes into the model id so cached calls never mix."""

    layers: str | tuple[int, ...]
    repetition_penalty: float = REPETITION_PENALTY
    final_norm: bool = False
    alpha: float = ALPHA

    @property
    def tag(self) -> str:
        layers = self.layers if isinstance(self.layers, str) else ",".join(map(str, self.layers))
        tag = f"dola={layers};rp={self.repetition_penalty:g}"
        if self.alpha != ALPHA:
            tag += f";alpha={self.alpha:g}"
        return tag + (";final_norm" if self.final_norm else "")


class DoLa:
    """DoLa scoring over a transformers causal LM run with `output_hidden_states=True`."""

    def __init__(self, model: Any, settings: DoLaSettings) -> None:
        config = model.config
        if getattr(config, "is_encoder_decoder", False):
            raise ModelError("DoLa needs a decoder-only model", "use a causal language model")
        text_config = config.get_text_config()
        self.settings = settings
        self.num_layers = int(text_config.num_hidden_layers)
        tied = bool(getattr(config, "tie_word_embeddings", getattr(text_config, "tie_word_embeddings", False)))
        self.candidates = candidate_layers(settings.layers, self.num_layers, tied)
        self.lm_head = model.get_output_embeddings()
        if self.lm_head is None:
            raise ModelError("DoLa needs the model's output embeddings (lm_head)", "use a causal language model")
        self.norm = None
        if settings.final_norm:
            decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
            self.norm = next(
                (getattr(decoder, n) for n in ("norm", "final_layernorm", "ln_f") if hasattr(decoder, n)), None
            )
            if self.norm is None:
                raise ModelError(
                    "dola_final_norm: cannot find this model's final norm", "leave dola_final_norm off"
                )

    def early_exit_logits(self, hidden_states: Sequence[Any], keep: int) -> Any:
        """Logits of the last `keep` positions read from every candidate layer: [L, B, keep, V]."""
        import torch

        out = []
        for layer in self.candidates:
            hidden = hidden_states[layer][:, -keep:, :]
            if self.norm is not None:
                hidden = self.norm(hidden)
            out.append(self.lm_head(hidden).float())
        return torch.stack(out, dim=0)

    def scores(self, final_logits: Any, hidden_states: Sequence[Any]) -> tuple[Any, Any]:
        """DoLa scores [B, T, V] for the last T = final_logits.shape[1] positions, and the premature
        layer chosen at each position [B, T]."""
        import torch

        final = final_logits.float()
        keep = final.shape[1]
        premature = self.early_exit_logits(hidden_states, keep)
        if len(self.candidates) == 1:
            choice = torch.zeros(final.shape[:2], dtype=torch.long, device=final.device)
        else:
            choice = jensen_shannon(final, premature).argmax(dim=0)  # [B, T]
        picked = premature.gather(0, choice[None, :, :, None].expand(1, *premature.shape[1:])).squeeze(0)
        layers = torch.tensor(self.candidates, device=final.device)[choice]
        return contrast(final, picked, self.settings.alpha), layers

    def next_token_scores(self, out: Any, histories: Sequence[Sequence[int]]) -> Any:
        """The scores generation picks from [B, V]: DoLa's at the last position, repetition-penalised
        over each row's tokens so far (prompt and generated)."""
        scores, _ = self.scores(out.logits[:, -1:, :], out.hidden_states)
        return apply_repetition_penalty(scores[:, -1, :], histories, self.settings.repetition_penalty)

    def token_loglikelihoods(self, final_logits: Any, hidden_states: Sequence[Any]) -> Any:
        """Per-position DoLa scores [B, T, V] for scoring given continuations: filtered tokens get the
        authors' finite floor instead of -inf (no repetition penalty, as in their TruthfulQA scoring)."""
        scores, _ = self.scores(final_logits, hidden_states)
        return scores.masked_fill(scores == float("-inf"), FILTERED_LOGLIKELIHOOD)
