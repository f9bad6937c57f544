"""Functional correctness of generated code (HumanEval): build each program, run it in the
sandbox, and turn the n results per problem into pass@k."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from capeval.scoring.base import Scorer
from capeval.scoring.extract import extract_code
from capeval.scoring.metrics import pass_at_k
from capeval.scoring.sandbox import ExecutionResult, Job, run_programs, sandbox_isolation
from capeval.types import Response, Sample, Score

if TYPE_CHECKING:
    from capeval.tasks.base import Task

# The Codex paper's stop sequences: a completion ends where a new top-level statement begins.
CODEX_STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


def truncate_completion(completion: str, stops: Sequence[str] = CODEX_STOP) -> str:
    """A plain completion cut at the first stop sequence (for backends that ignore `stop`)."""
    cut = len(completion)
    for s in stops:
        i = completion.find(s)
        if i != -1:
            cut = min(cut, i)
    return completion[:cut]


def build_program(prompt: str, output: str, entry_point: str) -> tuple[str, str]:
    """(code extracted from the model's output, program to run).

    A full function (chat answers, fenced or not) is run after the prompt with a placeholder body,
    so the prompt's imports and helper functions stay defined and the model's definition replaces
    the stub. A plain completion continues the prompt's function body, cut at the Codex stops."""
    code = extract_code(output, entry_point)
    if re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        return code, f"{prompt}    pass\n\n{code}"
    code = truncate_completion(code)
    return code, prompt + code


def check_code(test: str, entry_point: str) -> str:
    """HumanEval's tests define `check(candidate)`; the run calls it on the entry point."""
    return f"{test}\n\ncheck({entry_point})\n"


def _score_from_results(
    sample: Sample, codes: Sequence[str | None], results: Sequence[ExecutionResult | None], k_values: Sequence[int], errors: Sequence[str | None]
) -> Score:
    n = len(results)
    c = sum(1 for r in results if r is not None and r.passed)
    values = {f"pass@{k}": pass_at_k(n, c, k) for k in k_values if k <= n}
    isolation = next((r.isolation for r in results if r is not None), sandbox_isolation())
    runs = [
        {"status": r.status, "reason": r.reason, "stderr_tail": r.stderr_tail[-600:], "duration_s": round(r.duration_s, 3)}
        if r is not None
        else {"status": "error", "reason": f"model call failed: {e}"}
        for r, e in zip(results, errors)
    ]
    first = codes[0] if codes else None
    return Score(
        sample.id,
        sample.task,
        values,
        extracted=first,
        parsed=first is not None and first.strip() != "",
        target=sample.fields.get("entry_point"),
        metadata={
            "n": n, "n_correct": c, "isolation": isolation, "runs": runs, "programs": list(codes),
            "grader": f"capeval sandbox, isolation {isolation}",
        },
    )


def score_code_samples(
    samples: Sequence[Sample],
    responses: Sequence[Sequence[Response]],
    k_values: Sequence[int] = (1,),
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    workers: int | None = None,
) -> list[Score]:
    """pass@k for every sample: all programs of all samples run in one parallel sandbox pool.

    Each sample needs fields prompt, test and entry_point; its n responses are n samples for
    pass@k (values are reported for each k <= n). A failed model call has no program: here it is
    recorded in the sample's `runs` and counts as not passing, but in a run the engine then drops the
    whole sample (all n responses, the answered ones too) from the metrics when any of its calls
    failed for good: its scores are cleared, it is marked `call_failed` and counted in the metric's
    `n_failed`, not as a wrong program."""
    jobs: list[Job] = []
    where: list[tuple[int, int]] = []
    codes: list[list[str | None]] = []
    errors: list[list[str | None]] = []
    for si, (s, resps) in enumerate(zip(samples, responses)):
        prompt, test, ep = str(s.fields["prompt"]), str(s.fields["test"]), str(s.fields["entry_point"])
        codes.append([])
        errors.append([])
        for ri, r in enumerate(resps):
            if r.error or r.text is None:
                codes[si].append(None)
                errors[si].append(r.error or "no text")
                continue
            code, program = build_program(prompt, r.text, ep)
            codes[si].append(code)
            errors[si].append(None)
            jobs.append(Job(program, check_code(test, ep), timeout_s))
            where.append((si, ri))
    results_flat = run_programs(jobs, workers=workers, memory_mb=memory_mb) if jobs else []
    results: list[list[ExecutionResult | None]] = [[None] * len(r) for r in responses]
    for (si, ri), res in zip(where, results_flat):
        results[si][ri] = res
    return [
        _score_from_results(s, codes[i], results[i], k_values, errors[i]) for i, s in enumerate(samples)
    ]


def humaneval_scorer(k_values: Sequence[int] = (1,), timeout_s: float = 10.0, memory_mb: int = 1024) -> Scorer:
    """pass@k for one HumanEval sample: each of its n responses is extracted (`extract_code`),
    joined to the prompt, run with the tests in the sandbox, and the unbiased estimator applied.

    Args:
        k_values: the k of each reported pass@k (only k <= n, the sample's number of responses).
        timeout_s: wall-clock limit per program.
        memory_mb: address-space limit per program.
    """

    def score(sample: Sample, responses: Sequence[Response], task: Task) -> Score:
        return score_code_samples([sample], [responses], k_values, timeout_s, memory_mb)[0]

    return score
