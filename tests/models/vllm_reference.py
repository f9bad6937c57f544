"""A reference engine with vLLM's offline interface, computed by transformers on CPU.

capeval's vLLM backend talks to `vllm.LLM` through `get_tokenizer()`, `generate(prompts,
sampling_params, use_tqdm=...)` and `SamplingParams`; vLLM itself needs a GPU, so on CPU the tests
give the backend this engine instead. Its classes carry vLLM's field names (vllm/outputs.py,
vllm/logprobs.py, vllm/sampling_params.py in vLLM 0.33) and it answers as vLLM documents: prompts as
{"prompt_token_ids": [...]}; `prompt_logprobs` as one entry per prompt position, None first, each a
dict holding the prompt token's Logprob (with its vocabulary rank) plus the top-k; stop strings cut
from the returned text. It decodes greedily only (sampling would need vLLM's own RNG).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SamplingParams:
    n: int = 1
    max_tokens: int | None = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] | None = None
    seed: int | None = None
    prompt_logprobs: int | None = None
    detokenize: bool = True


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: Any
    finish_reason: str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    prompt_logprobs: list[dict[int, Logprob] | None] | None
    outputs: list[CompletionOutput] = field(default_factory=list)
    finished: bool = True


class TransformersEngine:
    SamplingParams = SamplingParams

    def __init__(self, model: Any, tokenizer: Any, eos_ids: set[int]) -> None:
        self.model, self.tokenizer, self.eos_ids = model, tokenizer, eos_ids
        self.calls: list[int] = []  # prompts per generate() call

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def generate(self, prompts: list[dict[str, list[int]]], sampling_params: Any, use_tqdm: bool = True) -> list[RequestOutput]:
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        assert len(params) == len(prompts)
        self.calls.append(len(prompts))
        return [self._one(str(i), p["prompt_token_ids"], sp) for i, (p, sp) in enumerate(zip(prompts, params))]

    def _one(self, rid: str, ids: list[int], sp: SamplingParams) -> RequestOutput:
        import torch

        if sp.temperature > 0:
            raise NotImplementedError("the reference engine decodes greedily only")
        with torch.inference_mode():
            logits = self.model(torch.tensor([ids])).logits[0].float()
        prompt_logprobs: list[dict[int, Logprob] | None] | None = None
        if sp.prompt_logprobs is not None:
            lps = torch.log_softmax(logits, dim=-1)
            prompt_logprobs = [None]
            for pos in range(1, len(ids)):
                row, tok = lps[pos - 1], ids[pos]
                entry = {tok: Logprob(float(row[tok]), int((row > row[tok]).sum()) + 1)}
                for t in row.topk(sp.prompt_logprobs).indices.tolist():
                    entry.setdefault(t, Logprob(float(row[t]), int((row > row[t]).sum()) + 1))
                prompt_logprobs.append(entry)
        out: list[int] = []
        nxt = int(logits[-1].argmax())
        reason = "length"
        text = ""
        with torch.inference_mode():
            while len(out) < (sp.max_tokens or 16):
                if nxt in self.eos_ids:
                    reason = "stop"
                    break
                out.append(nxt)
                text = self.tokenizer.decode(out, skip_special_tokens=True)
                hits = [text.find(s) for s in (sp.stop or []) if s and s in text]
                if hits:
                    text, reason = text[: min(hits)], "stop"
                    break
                nxt = int(self.model(torch.tensor([ids + out])).logits[0, -1].argmax())
        return RequestOutput(rid, None, list(ids), prompt_logprobs, [CompletionOutput(0, text, out, None, None, reason)])
