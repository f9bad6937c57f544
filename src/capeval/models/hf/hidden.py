"""Every layer's hidden state at chosen tokens of plain texts (probes and interpretability)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from capeval.models.hf.loading import LoadedModel, torch_module


class HiddenStates(LoadedModel):
    """`hidden_states` of the hf backend."""

    def hidden_states(self, texts: Sequence[str], ends: Sequence[int] | None = None) -> Any:
        """Every layer's hidden state at one token of each plain text, as a float32 numpy array
        [layers + 1, len(texts), hidden size] (0: the embeddings; the last: after the final norm).

        The token is the last one starting before character `ends[i]` (default: the text's last
        token), e.g. an entity's last token when a prompt goes on after it."""
        import numpy as np

        torch = torch_module()
        positions: list[tuple[list[int], int]] = []
        for i, text in enumerate(texts):
            end = len(text) if ends is None else ends[i]
            add = not (self._bos_text and text.startswith(self._bos_text))
            if self.tokenizer.is_fast:
                enc = self.tokenizer(text, add_special_tokens=add, return_offsets_mapping=True)
                ids = list(enc["input_ids"])
                spans = enc["offset_mapping"]
                hits = [j for j, (a, b) in enumerate(spans) if b > a and a < end]
                pos = hits[-1] if hits else len(ids) - 1
            else:
                ids = self.encode(text)
                pos = len(self.encode(text[:end])) - 1
            ids = ids[: self.max_length]
            positions.append((ids, min(pos, len(ids) - 1)))
        out: list[Any] = []
        with torch.inference_mode():
            for b in range(0, len(positions), self.batch_size):
                batch = positions[b : b + self.batch_size]
                width = max(len(ids) for ids, _ in batch)
                # right padding: a causal model's states before the padding do not see it
                batch_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, (toks, _) in enumerate(batch):
                    batch_ids[row, : len(toks)] = torch.tensor(toks, dtype=torch.long)
                    mask[row, : len(toks)] = 1
                kwargs: dict[str, Any] = {"output_hidden_states": True, "use_cache": False}
                if self._has_logits_to_keep:
                    kwargs["logits_to_keep"] = 1
                result = self.model(batch_ids.to(self.device), attention_mask=mask.to(self.device), **kwargs)
                rows = torch.arange(len(batch))
                at = torch.tensor([pos for _, pos in batch])
                out.append(torch.stack([h[rows, at].float().cpu() for h in result.hidden_states]))
        if not out:
            config = self.model.config.get_text_config()
            return np.zeros((config.num_hidden_layers + 1, 0, config.hidden_size), dtype=np.float32)
        return np.concatenate([o.numpy() for o in out], axis=1)
