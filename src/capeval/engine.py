"""The engine: answers Requests from the store or a model backend, and runs tasks end to end."""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from capeval.analysis.stats import bootstrap_ci, small_sample_warning, wilson_interval
from capeval.models.base import Model
from capeval.models.fingerprint import identity_changes
from capeval.prompting import PromptConfig
from capeval.store import Store
from capeval.tasks.base import ScoringContext, Task
from capeval.tasks.subsets import Subset, choose_items
from capeval.types import MetricResult, Request, Response, RunResult, Sample, Score

if TYPE_CHECKING:
    from typing_extensions import Self

# Requests per backend call: each chunk is saved before the next starts, so a killed run loses
# at most one chunk; big enough for the backend to batch well.
DEFAULT_CHUNK = 64

log = logging.getLogger("capeval.engine")


@dataclass
class CallStats:
    cached: int = 0
    new: int = 0
    failed: int = 0
    duplicates: int = 0


class Progress:
    """A rich progress bar (rate and ETA) that degrades to nothing when disabled."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress: Any = None

    def __enter__(self) -> Self:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import (
                Progress as RichProgress,
            )

            self._progress = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def track(self, description: str, total: int) -> Callable[[int], None]:
        if self._progress is None:
            return lambda n: None
        tid = self._progress.add_task(description, total=total, rate="")
        start = time.monotonic()
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            elapsed = max(1e-9, time.monotonic() - start)
            self._progress.update(tid, advance=n, rate=f"{done[0] / elapsed:.1f}/s")

        return advance


def execute(
    model: Model,
    requests: Sequence[Request],
    store: Store | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    progress: Progress | None = None,
) -> tuple[list[Response], CallStats]:
    """Answer `requests` in order. Identical calls are sent once; calls already in the store are
    not sent; every finished chunk is written to the store before the next one is sent."""
    stats = CallStats()
    keys = [r.key(model.model_id) for r in requests]
    answers: dict[str, Response] = store.get_calls(set(keys)) if store is not None else {}
    stats.cached = sum(1 for k in set(keys) if k in answers)
    todo: dict[str, Request] = {}
    for k, r in zip(keys, requests):
        if k not in answers and k not in todo:
            todo[k] = r
    stats.duplicates = len(keys) - len(set(keys))
    by_kind: dict[str, list[tuple[str, Request]]] = defaultdict(list)
    for k, r in todo.items():
        by_kind[r.kind].append((k, r))
    advance = (progress or Progress(False)).track(f"{model.model_id[:40]} calls", len(todo)) if todo else None
    for kind, items in by_kind.items():
        # A backend batches within one chunk: requests sharing a few-shot prefix stay together
        # (its KV cache is computed once), and within that, longest prompts first, so batches
        # are padded as little as one sort over the whole run would allow.
        items.sort(key=lambda item: (item[1].shared_prefix or "", -_prompt_chars(item[1])))
        call = model.generate if kind == "generate" else model.loglikelihood
        for i in range(0, len(items), chunk_size):
            chunk = items[i : i + chunk_size]
            responses = call([r for _, r in chunk])
            if len(responses) != len(chunk):
                raise RuntimeError(f"backend {model.model_id} answered {len(responses)} of {len(chunk)} requests")
            if store is not None:
                store.put_calls(model.model_id, [(k, r, resp) for (k, r), resp in zip(chunk, responses)])
            for (k, _), resp in zip(chunk, responses):
                answers[k] = resp
                stats.new += resp.error is None
                stats.failed += resp.error is not None
            if advance:
                advance(len(chunk))
    return [answers[k] for k in keys], stats


def _prompt_chars(req: Request) -> int:
    if isinstance(req.prompt, str):
        return len(req.prompt)
    return sum(len(m.content) for m in req.prompt)


@dataclass
class TaskPlan:
    """A task's samples with their rendered prompts and requests, before any model call."""

    task: Task
    samples: list[Sample]
    prompts: list[str]
    requests: list[list[Request]]
    malformed: list[str] = field(default_factory=list)
    subset: Subset | None = None  # set when not every item of the task is evaluated
    warnings: list[str] = field(default_factory=list)


def plan_task(
    task: Task,
    config: PromptConfig,
    limit: int | None = None,
    strict: bool = False,
    sample: int | None = None,
    stratify: str | None = None,
) -> TaskPlan:
    """The task's items (all, the first `limit`, or a seeded sample of `sample` stratified by the
    task's strata or the `stratify` field) with their prompts and requests."""
    loaded, subset, warning = choose_items(task, limit=limit, sample=sample, seed=config.seed, stratify=stratify, strict=strict)
    k = task.shots if config.shots is None else config.shots
    pool: list[Sample] = []
    if k > 0:
        fewshot_split = task.fewshot_split or task.split
        pool = task.load(split=fewshot_split).samples if fewshot_split != task.split else task.load().samples
    prompts, reqs = [], []
    for s in loaded.samples:
        exemplars = task.exemplars_for(s, pool, config)
        rendered = task.render(s, exemplars, config)
        prompts.append(rendered.text)
        reqs.append(task.requests(s, rendered, config))
    return TaskPlan(task, loaded.samples, prompts, reqs, loaded.malformed, subset, [warning] if warning else [])


def aggregate(task: str, scores: Sequence[Score], seed: int = 0, expected: Sequence[str] = ()) -> list[MetricResult]:
    """Mean of each metric over the task's samples, with a bootstrap 95% CI, n and unparsed rate.

    A sample whose answer could not be parsed counts as wrong (0) in the metric and is also
    reported in `unparsed_rate`; a sample whose model call failed counts as unparsed. Judge-scored
    samples marked `metadata["unrated"]` are left out of the means of the metrics they lack."""
    # When no sample produced any value (every call or verdict failed), the task's declared
    # metrics are still reported, so the run shows its unparsed rate instead of no line at all.
    names: list[str] = list(expected) if scores and not any(s.values for s in scores) else []
    for s in scores:
        for m in s.values:
            if m not in names:
                names.append(m)
    n = len(scores)
    unparsed = sum(1 for s in scores if not s.parsed) / n if n else 0.0
    out = []
    for m in names:
        # A judge's failed verdict is marked "unrated": counted in unparsed_rate, but not averaged
        # in as a 0, which on a judge's scale (1-5, 1-100) would be a rating nobody gave.
        rated = [s for s in scores if m in s.values or not s.metadata.get("unrated")]
        vals = [float(s.values.get(m, 0.0)) for s in rated]
        mean, lo, hi = bootstrap_ci(vals, seed=seed)
        warn_lo, warn_hi = lo, hi
        if vals and all(v in (0.0, 1.0) for v in vals):
            # A bootstrap interval collapses to a point when every item scored the same (0/20);
            # the Wilson interval still says how little n items can tell.
            wlo, whi = wilson_interval(int(sum(vals)), len(vals))
            warn_lo, warn_hi = min(lo, wlo), max(hi, whi)
        warning = small_sample_warning(len(rated), warn_lo, warn_hi)
        out.append(MetricResult(task, m, mean, lo, hi, len(rated), unparsed, warning))
    return out


def mark_subset(task: str, metrics: Sequence[MetricResult], subset: Subset | None) -> list[MetricResult]:
    """Label each metric computed on a subset with the items it covers ("sample 40/80"): a
    per-stratum row with its stratum's count, every other row with the task's."""
    if subset is None:
        return list(metrics)
    out = []
    for m in metrics:
        group = m.task[len(task) + 1 :] if m.task.startswith(task + "/") else None
        k, total = subset.per_stratum.get(group, (subset.n, subset.total)) if group else (subset.n, subset.total)
        out.append(replace(m, subset=f"{subset.label} {k}/{total}"))
    return out


def evaluate_tasks(
    model: Model,
    tasks: Sequence[Task],
    config: PromptConfig | None = None,
    store: Store | None = None,
    limit: int | None = None,
    strict: bool = False,
    model_spec: str | None = None,
    progress: bool = True,
    chunk_size: int = DEFAULT_CHUNK,
    extra_config: Mapping[str, Any] | None = None,
    judge: Model | None = None,
    sample: int | None = None,
    stratify: Mapping[str, str] | None = None,
) -> RunResult:
    """Run every task on one model: plan prompts, answer all calls through the store, score,
    save every sample (prompt, raw output, extracted answer, scores) and aggregate with CIs.

    `limit` takes the first N items (per subject on multi-subject tasks); `sample` a seeded sample
    of N stratified by each task's strata, or by `stratify[task]`; the run config records which."""
    config = config or PromptConfig()
    own_store = store is None
    store = store or Store()
    try:
        plans = [plan_task(t, config, limit, strict, sample, (stratify or {}).get(t.name)) for t in tasks]
        subsets = {p.task.name: p.subset.to_config() for p in plans if p.subset is not None}
        run_config = {
            "prompt": asdict(config), "limit": limit, "sample": sample, "stratify": dict(stratify or {}),
            "subsets": subsets, **(extra_config or {}),
        }
        warnings: list[str] = []
        identity = getattr(model, "identity", None)
        if identity:
            run_config["model_identity"] = identity
            changed = changed_model_warning(store, identity)
            if changed:
                log.warning(changed)
                warnings.append(changed)
        run_id = store.start_run(model.model_id, model_spec or model.model_id, [t.name for t in tasks], run_config)
        flat = [r for p in plans for rs in p.requests for r in rs]
        with Progress(progress) as bar:
            responses, stats = execute(model, flat, store, chunk_size=chunk_size, progress=bar)
        metrics: list[MetricResult] = []
        pos = 0
        for p in plans:
            per_sample = []
            for reqs in p.requests:
                per_sample.append(responses[pos : pos + len(reqs)])
                pos += len(reqs)
            with Progress(progress) as bar:
                ctx = ScoringContext(judge=judge, store=store, progress=bar)
                scores = p.task.score_all(p.samples, per_sample, ctx)
            rows = []
            for s, prompt, reqs, resps in zip(p.samples, p.prompts, p.requests, per_sample):
                rows.append(
                    {
                        "task": p.task.name,
                        "sample_id": s.id,
                        "prompt": prompt,
                        "response": _response_record(reqs, resps),
                        "metadata": s.metadata,
                        "request_keys": [r.key(model.model_id) for r in reqs],
                    }
                )
            store.save_samples(run_id, rows, scores)
            grader = task_grader(p.task, scores, judge)
            if grader:
                run_config.setdefault("graders", {})[p.task.name] = grader
            supported = [s for s in scores if not s.metadata.get("unsupported")]
            if len(supported) < len(scores):
                warnings.append(
                    f"{p.task.name}: {len(scores) - len(supported)} samples unsupported by this model "
                    "(e.g. need images or tools); left out of the metrics"
                )
            task_metrics = aggregate(p.task.name, supported, expected=p.task.metrics) + p.task.group_metrics(supported)
            metrics.extend(mark_subset(p.task.name, task_metrics, p.subset))
            warnings.extend(p.warnings)
            if p.malformed:
                warnings.append(f"{p.task.name}: {len(p.malformed)} malformed rows skipped (first: {p.malformed[0]})")
            if not p.samples:
                warnings.append(f"{p.task.name}: no samples to evaluate")
        if stats.failed:
            warnings.append(f"{stats.failed} model calls failed; their samples count as unparsed. Re-run to retry them.")
        result = RunResult(
            run_id=run_id,
            model=model_spec or model.model_id,
            tasks=tuple(t.name for t in tasks),
            metrics=tuple(metrics),
            n_calls_cached=stats.cached,
            n_calls_new=stats.new,
            config=run_config,
            warnings=tuple(warnings),
        )
        store.finish_run(result)
        return result
    finally:
        if own_store:
            store.close()


def changed_model_warning(store: Store, identity: dict[str, Any]) -> str | None:
    """"the model at DIR changed since run X: ..." when the latest run of the same model (same
    `base_id`: path or hub id, dtype and options) saw other files or another hub commit; None when
    it saw the same, or there is none."""
    rows = store.query(
        "SELECT run_id, config FROM runs WHERE json_extract(config, '$.model_identity.base_id') = ? "
        "ORDER BY created_at DESC LIMIT 1",
        (identity["base_id"],),
    )
    if not rows:
        return None
    before = json.loads(rows[0]["config"]).get("model_identity") or {}
    if before.get("model_id") == identity.get("model_id"):
        return None
    return (
        f"the model at {identity.get('location')} changed since run {rows[0]['run_id']} "
        f"({identity_changes(before, identity)}): answers are not reused"
    )


def task_grader(task: Task, scores: Sequence[Score], judge: Model | None) -> str | None:
    """Who graded a task's answers where that could differ between runs: the judge model of a judged
    task, or the graders scorers name in their scores' metadata (MATH's math-verify and its version,
    HumanEval's sandbox isolation level). None for tasks graded by capeval's extractors alone."""
    named = sorted({str(s.metadata["grader"]) for s in scores if s.metadata.get("grader")})
    if task.settings.get("judge") and judge is not None:
        named.insert(0, f"judge {judge.model_id}")
    return "; ".join(named) or None


def _response_record(reqs: Sequence[Request], resps: Sequence[Response]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for req, r in zip(reqs, resps):
        if req.kind == "generate":
            out.append({"text": r.text, "error": r.error, "finish_reason": r.finish_reason})
        else:
            out.append({"continuations": list(req.continuations), "logprobs": list(r.logprobs), "is_greedy": list(r.is_greedy), "error": r.error})
    return out
