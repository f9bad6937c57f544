"""The shared vocabulary of a run: frozen dataclasses that every stage takes and returns."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from capeval.errors import StoreError

# The labels of multiple-choice options, in order: "A", "B", ...
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

RequestKind = Literal["generate", "loglikelihood"]


@dataclass(frozen=True)
class Message:
    """One chat turn: role is "system", "user" or "assistant"."""

    role: str
    content: str


@dataclass(frozen=True)
class Sample:
    """One benchmark item, independent of any prompt format or model.

    `fields` keeps the dataset row (after field mapping) so prompt templates can use any column;
    `choices` is set for multiple-choice items and `target` is then the index of the right choice.
    """

    id: str
    task: str
    fields: Mapping[str, Any]
    target: Any = None
    choices: tuple[str, ...] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GenerationParams:
    """Decoding settings; part of every generate call's cache key."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True)
class Request:
    """One model call.

    generate: `prompt` is completed under `params`.
    loglikelihood: for each string in `continuations`, the log-probability of that continuation
    given `prompt`. `shared_prefix` optionally names the leading part of the prompt that many
    requests share (few-shot exemplars), so a backend may compute it once and reuse its KV cache;
    it is a hint only and never changes the result.
    `repeat` distinguishes otherwise identical sampled calls (pass@k draws n samples).
    The fields after `repeat` locate the request in a run and are not part of the cache key.
    """

    kind: RequestKind
    prompt: str | tuple[Message, ...]
    continuations: tuple[str, ...] = ()
    params: GenerationParams = GenerationParams()
    shared_prefix: str | None = None
    repeat: int = 0
    task: str = ""
    sample_id: str = ""

    def key(self, model_id: str) -> str:
        """Hash of (model identity, request content, generation parameters): the cache key."""
        prompt: Any = self.prompt if isinstance(self.prompt, str) else [asdict(m) for m in self.prompt]
        payload = {
            "model": model_id,
            "kind": self.kind,
            "prompt": prompt,
            "continuations": list(self.continuations),
            "params": asdict(self.params) if self.kind == "generate" else None,
            "repeat": self.repeat,
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()


# Bumped when the stored JSON of a Response changes meaning; Response.from_json refuses newer ones.
# 2 added `system_fingerprint` and `served_model`; a response without them is still stored as 1,
# so a capeval that reads up to 1 refuses only answers that carry them.
RESPONSE_FORMAT_VERSION = 2


@dataclass(frozen=True)
class Response:
    """A backend's answer to one Request.

    generate: `text`. loglikelihood: `logprobs[i]` is the summed log-probability of
    continuation i, `is_greedy[i]` whether greedy decoding would produce it, `n_tokens[i]` its
    token count. `error` is set (and the rest empty) when the call failed for good.
    `system_fingerprint` and `served_model` are what an OpenAI-compatible server said about the
    model that answered (its `system_fingerprint` and `model` fields), where it said so.
    """

    text: str | None = None
    logprobs: tuple[float, ...] = ()
    is_greedy: tuple[bool, ...] = ()
    n_tokens: tuple[int, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None
    cached: bool = False
    finish_reason: str | None = None
    system_fingerprint: str | None = None
    served_model: str | None = None

    def to_json(self) -> str:
        """The stored form: the fields above (less `cached`) plus `format_version`."""
        d = asdict(self)
        d.pop("cached")
        if d["system_fingerprint"] is None and d["served_model"] is None:
            del d["system_fingerprint"], d["served_model"]
            d["format_version"] = 1
        else:
            d["format_version"] = RESPONSE_FORMAT_VERSION
        return json.dumps(d, ensure_ascii=False)

    @classmethod
    def from_json(cls, s: str, cached: bool = True) -> Response:
        """Read a stored response; rows written before format versions (no `format_version`) are format 0,
        which has the same fields."""
        d = json.loads(s)
        version = d.pop("format_version", 0)
        if not isinstance(version, int) or version > RESPONSE_FORMAT_VERSION:
            raise StoreError(
                f"a stored model response has format version {version!r}; this capeval reads up to "
                f"{RESPONSE_FORMAT_VERSION}",
                "upgrade capeval (pip install -U capeval)",
            )
        for name in ("logprobs", "is_greedy", "n_tokens"):
            d[name] = tuple(d.get(name) or ())
        return cls(**d, cached=cached)


@dataclass(frozen=True)
class Score:
    """The grade of one sample: metric name -> value (1.0/0.0 for accuracy-like metrics).

    `extracted` is the answer read from the output (None when none could be read; then
    `parsed` is False and the sample counts toward the unparsed rate).
    """

    sample_id: str
    task: str
    values: Mapping[str, float]
    extracted: str | None = None
    parsed: bool = True
    target: Any = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricResult:
    """An aggregate metric with its bootstrap 95% confidence interval.

    `subset` says which items it was computed on when they are not all of the task's (or
    group's): "sample 40/80" (a seeded stratified sample) or "first 20/80" (--limit).
    `n` counts the items the value is computed over; `n_failed` the items left out because their
    model call failed for good (a failed call is not a wrong answer), so n + n_failed items were
    asked."""

    task: str
    metric: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    unparsed_rate: float = 0.0
    warning: str | None = None
    subset: str | None = None
    n_failed: int = 0


@dataclass(frozen=True)
class BreakdownRow:
    """The mean of one metric over one group of samples.

    `n` counts the rated samples the mean is over; `n_unrated` those whose verdict failed (or whose
    model call failed): they are shown, never averaged in as a score; `n_unsupported` those the
    model could not attempt (images, tools), left out as in CrossEval.
    """

    group: str  # what the rows are grouped by: "overall", "type", "capability", "l1", ...
    name: str  # the group's value: "Coding & Reasoning", "hard", ...
    metric: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    n_unrated: int = 0
    n_unsupported: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunResult:
    """Everything a finished run reports; the samples themselves live in the store."""

    run_id: str
    model: str
    tasks: tuple[str, ...]
    metrics: tuple[MetricResult, ...]
    n_calls_cached: int = 0
    n_calls_new: int = 0
    config: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    n_calls_failed: int = 0

    @property
    def complete(self) -> bool:
        """Every model call was answered (a run with failed calls is `incomplete`)."""
        return self.n_calls_failed == 0

    def metric(self, task: str, metric: str) -> MetricResult:
        for m in self.metrics:
            if m.task == task and m.metric == metric:
                return m
        raise KeyError(f"{task}/{metric}")


def messages_to_tuple(messages: Sequence[Mapping[str, str]] | Sequence[Message]) -> tuple[Message, ...]:
    return tuple(m if isinstance(m, Message) else Message(m["role"], m["content"]) for m in messages)
