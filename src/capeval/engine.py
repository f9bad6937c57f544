"""The engine: answers Requests from the store or a model backend, and runs tasks end to end."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from capeval import interrupts
from capeval.analysis.stats import bootstrap_ci, small_sample_warning, wilson_interval
from capeval.models.base import Model, batch_order
from capeval.models.fingerprint import identity_changes
from capeval.prompting import PromptConfig
from capeval.scoring.base import JUDGE_CALL_FAILED, ScoringContext
from capeval.scoring.metrics import higher_is_better, scale_range
from capeval.store import Store
from capeval.store.db import HEARTBEAT_S
from capeval.tasks.base import Task
from capeval.tasks.subsets import Subset, choose_items
from capeval.types import MetricResult, Request, Response, RunResult, Sample, Score

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger("capeval.engine")

# Requests per backend call for a batched backend without a `batch_size` of its own: each call's
# answers are saved before the next starts, so a killed run loses at most one call's work.
DEFAULT_CHUNK = 64
# A streaming backend's answers are committed in small groups: every SAVE_EVERY answers, or
# SAVE_S seconds after the oldest unsaved one, whichever comes first. A SIGKILL so re-sends at
# most the calls in flight plus the answers of the last SAVE_S seconds (at most SAVE_EVERY).
SAVE_EVERY = 16
SAVE_S = 0.25

CacheMode = Literal["use", "refresh", "off"]
CACHE_MODES: tuple[str, ...] = ("use", "refresh", "off")


@dataclass
class CallStats:
    cached: int = 0
    new: int = 0
    failed: int = 0
    duplicates: int = 0
    # why calls failed for good: "HTTP 500", "malformed reply", "timed out", ... -> count
    failures: Counter[str] = field(default_factory=Counter)

    def record(self, resp: Response) -> None:
        if resp.error is None:
            self.new += 1
        else:
            self.failed += 1
            self.failures[failure_reason(resp.error)] += 1


def failure_reason(error: str) -> str:
    """A failed call's error reduced to its kind, for counting: the last error of a backend that
    retried ("...; last error: HTTP 503: busy" -> "HTTP 503"), else the message's first clause."""
    last = error.rpartition("last error: ")[2] if "last error: " in error else error
    head = re.split(r"[:(;]", last, maxsplit=1)[0].strip()
    return head[:60] or "error"


class _Saver:
    """Commits answers in small groups (by count or age), so the store keeps up with a stream."""

    def __init__(self, store: Store | None, model_id: str, every: int, max_age_s: float) -> None:
        self.store, self.model_id, self.every, self.max_age_s = store, model_id, every, max_age_s
        self.pending: list[tuple[str, Request, Response]] = []
        self.oldest = 0.0

    def add(self, key: str, req: Request, resp: Response) -> None:
        if not self.pending:
            self.oldest = time.monotonic()
        self.pending.append((key, req, resp))
        if len(self.pending) >= self.every:
            self.flush()

    def tick(self) -> None:
        if self.pending and time.monotonic() - self.oldest >= self.max_age_s:
            self.flush()

    def flush(self) -> None:
        if self.pending and self.store is not None:
            self.store.put_calls(self.model_id, self.pending)
        self.pending = []


class Progress:
    """A rich progress bar (rate and ETA) that degrades to nothing when disabled. The display
    starts with the first `track`: a stage that tracks nothing (every call cached, a task scored
    without a judge) leaves no empty line behind."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress: Any = None

    def __enter__(self) -> Self:
        return self

    def _start(self) -> None:
        if self.enabled and self._progress is None:
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

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def track(self, description: str, total: int) -> Callable[[int], None]:
        self._start()
        if self._progress is None:
            return lambda n: None
        bars = self._progress
        tid = bars.add_task(description, total=total, rate="")
        start = time.monotonic()
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            elapsed = max(1e-9, time.monotonic() - start)
            bars.update(tid, advance=n, rate=f"{done[0] / elapsed:.1f}/s")

        return advance


def execute(
    model: Model,
    requests: Sequence[Request],
    store: Store | None = None,
    chunk_size: int | None = None,
    progress: Progress | None = None,
    cache: CacheMode = "use",
) -> tuple[list[Response], CallStats]:
    """Answer `requests` in order. Identical calls are sent once; calls already in the store are
    not sent; answers are written to the store as they come.

    A backend with `stream` (the openai one) keeps its calls in flight all the time and its
    answers are committed in groups of `chunk_size` (default SAVE_EVERY) or every SAVE_S seconds.
    Any other backend is called with batches of `chunk_size` requests (default: its `batch_size`,
    else DEFAULT_CHUNK), each batch saved before the next is sent. After a SIGINT / SIGTERM
    (capeval.interrupts) no new call is sent, every answer is saved, and `Interrupted` is raised
    with the count of stored calls.

    `cache`: "use" (the above), "refresh" (send every call again and overwrite its stored answer:
    for a server whose model cannot be identified) or "off" (neither read nor write answers)."""
    if cache not in CACHE_MODES:
        raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}, got {cache!r}")
    stats = CallStats()
    keys = [r.key(model.model_id) for r in requests]
    answers: dict[str, Response] = store.get_calls(set(keys)) if store is not None and cache == "use" else {}
    writer = store if cache != "off" else None
    stats.cached = sum(1 for k in set(keys) if k in answers)
    todo: dict[str, Request] = {}
    for k, r in zip(keys, requests):
        if k not in answers and k not in todo:
            todo[k] = r
    stats.duplicates = len(keys) - len(set(keys))
    advance = (progress or Progress(False)).track(f"{model.model_id[:40]} calls", len(todo)) if todo else None
    try:
        stream = getattr(model, "stream", None)
        if callable(stream):
            _execute_streaming(model, stream, list(todo.items()), writer, chunk_size or SAVE_EVERY, answers, stats, advance)
        else:
            _execute_batched(model, list(todo.items()), writer, chunk_size, answers, stats, advance)
    except interrupts.Interrupted as e:
        e.stored = stats.cached + stats.new
        e.total = len(set(keys))
        raise
    return [answers[k] for k in keys], stats


def _execute_streaming(
    model: Model,
    stream: Callable[[Sequence[Request]], Iterator[tuple[int, Response] | None]],
    items: list[tuple[str, Request]],
    store: Store | None,
    save_every: int,
    answers: dict[str, Response],
    stats: CallStats,
    advance: Callable[[int], None] | None,
) -> None:
    if not items:
        return
    saver = _Saver(store, model.model_id, save_every, SAVE_S)
    answered = stream([r for _, r in items])

    def take(item: tuple[int, Response]) -> None:
        i, resp = item
        key, req = items[i]
        answers[key] = resp
        stats.record(resp)
        saver.add(key, req, resp)
        if advance:
            advance(1)

    try:
        for item in answered:
            if item is not None:
                take(item)
            saver.tick()
            interrupts.check()
    except interrupts.Interrupted as stop:
        _drain_stream(answered, stop, take)
        raise
    finally:
        close = getattr(answered, "close", None)
        if callable(close):
            close()  # abandons the calls still in flight
        saver.flush()


def _drain_stream(
    answered: Iterator[tuple[int, Response] | None], stop: interrupts.Interrupted, take: Callable[[tuple[int, Response]], None]
) -> None:
    """Throw the stop into a stream that is a generator, and take the answers it still yields:
    those it had received but not yet handed over (the openai backend's calls that finished in
    the same moment). A stream that does not catch the Interrupted simply ends here."""
    throw = getattr(answered, "throw", None)
    if not callable(throw):
        return
    try:
        item = throw(stop)
        while True:
            if item is not None:
                take(item)
            item = next(answered)
    except (interrupts.Interrupted, StopIteration):
        pass
    except Exception as e:  # noqa: BLE001 - the run is stopping anyway; the answers taken are saved
        log.warning("while stopping, the model's stream failed: %s: %s", type(e).__name__, e)


def _execute_batched(
    model: Model,
    items: list[tuple[str, Request]],
    store: Store | None,
    chunk_size: int | None,
    answers: dict[str, Response],
    stats: CallStats,
    advance: Callable[[int], None] | None,
) -> None:
    chunk = chunk_size or int(getattr(model, "batch_size", 0) or 0) or DEFAULT_CHUNK
    by_kind: dict[str, list[tuple[str, Request]]] = defaultdict(list)
    for k, r in items:
        by_kind[r.kind].append((k, r))
    for kind, group in by_kind.items():
        # a backend batches within one call, so the calls follow its batch order
        group.sort(key=lambda item: batch_order(item[1]))
        call = model.generate if kind == "generate" else model.loglikelihood
        for i in range(0, len(group), chunk):
            part = group[i : i + chunk]
            # Nothing of a batch is answered until it returns, so a signal may stop it at once.
            with interrupts.cancellable():
                responses = call([r for _, r in part])
            if len(responses) != len(part):
                raise RuntimeError(f"backend {model.model_id} answered {len(responses)} of {len(part)} requests")
            if store is not None:
                store.put_calls(model.model_id, [(k, r, resp) for (k, r), resp in zip(part, responses)])
            for (k, _), resp in zip(part, responses):
                answers[k] = resp
                stats.record(resp)
            if advance:
                advance(len(part))


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
    warnings = [w for w in (warning, task.fewshot_warning(k), task.cot_warning(config, pool)) if w]
    return TaskPlan(task, loaded.samples, prompts, reqs, loaded.malformed, subset, warnings)


def aggregate(
    task: str, scores: Sequence[Score], seed: int = 0, expected: Sequence[str] = (), n_failed: int = 0
) -> list[MetricResult]:
    """Mean of each metric over the task's answered samples, with a bootstrap 95% CI, n and
    unparsed rate.

    `scores` are the samples whose model calls were answered; `n_failed` more were asked but their
    calls failed for good: they are not wrong answers, so they are left out of every mean and
    only counted (MetricResult.n_failed). A sample whose answer could not be parsed counts as
    wrong (0) in the metric and is also reported in `unparsed_rate`. Judge-scored samples marked
    `metadata["unrated"]` are left out of the means of the metrics they lack."""
    # When no sample produced any value (every call or verdict failed), the task's declared
    # metrics are still reported, so the run shows its unparsed rate or failed count instead of
    # no line at all.
    names: list[str] = list(expected) if (scores or n_failed) and not any(s.values for s in scores) else []
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
        warning = small_sample_warning(
            len(rated), warn_lo, warn_hi, scale=scale_range(m, task), unit=None if higher_is_better(m) else m
        )
        out.append(MetricResult(task, m, mean, lo, hi, len(rated), unparsed, warning, n_failed=n_failed))
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


class Heartbeat:
    """Says every HEARTBEAT_S that the process running a run is alive (`capeval runs list` shows
    a `running` run whose heartbeat stopped as `interrupted`)."""

    def __init__(self, store: Store, run_id: str, interval: float = HEARTBEAT_S) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(store, run_id, interval), name="capeval-heartbeat", daemon=True)

    def _beat(self, store: Store, run_id: str, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                store.beat(run_id)
            except Exception as e:  # noqa: BLE001 - a busy or closed store must not kill the run
                log.debug("heartbeat of run %s not recorded: %s", run_id, e)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def evaluate_tasks(
    model: Model,
    tasks: Sequence[Task],
    config: PromptConfig | None = None,
    store: Store | None = None,
    limit: int | None = None,
    strict: bool = False,
    model_spec: str | None = None,
    progress: bool = True,
    chunk_size: int | None = None,
    extra_config: Mapping[str, Any] | None = None,
    judge: Model | None = None,
    sample: int | None = None,
    stratify: Mapping[str, str] | None = None,
    cache: CacheMode = "use",
) -> RunResult:
    """Run every task on one model: plan prompts, answer all calls through the store, score,
    save every sample (prompt, raw output, extracted answer, scores) and aggregate with CIs.

    `limit` takes the first N items (per subject on multi-subject tasks); `sample` a seeded sample
    of N stratified by each task's strata, or by `stratify[task]`; the run config records which.
    `cache` is execute()'s (use, refresh or off); the run config records refresh and off.

    The run ends `finished` when every model call was answered, `incomplete` when some failed for
    good (metrics then cover the answered samples; RunResult.n_calls_failed counts the rest, and
    the judged samples whose judge call failed for good), and
    `interrupted` when a signal stopped it (capeval.interrupts.Interrupted is raised, carrying the
    run id and how many calls are stored)."""
    config = config or PromptConfig()
    own_store = store is None
    store = store or Store()
    run_id: str | None = None
    try:
        plans = [plan_task(t, config, limit, strict, sample, (stratify or {}).get(t.name)) for t in tasks]
        subsets = {p.task.name: p.subset.to_config() for p in plans if p.subset is not None}
        run_config = {
            "prompt": asdict(config), "limit": limit, "sample": sample, "stratify": dict(stratify or {}),
            "subsets": subsets, **(extra_config or {}),
        }
        if cache != "use":
            run_config["cache"] = cache
        # how the run was executed, recorded only when not the default
        if chunk_size is not None:
            run_config["save_every"] = chunk_size
        if strict:
            run_config["strict"] = True
        warnings: list[str] = []
        identity = getattr(model, "identity", None)
        if identity:
            run_config["model_identity"] = identity
            changed = changed_model_warning(store, identity)
            if changed:
                log.warning(changed)
                warnings.append(changed)
        run_id = store.start_run(model.model_id, model_spec or model.model_id, [t.name for t in tasks], run_config)
        with Heartbeat(store, run_id):
            result = _run_plans(
                model, plans, store, run_id, run_config, model_spec, progress, chunk_size, judge, warnings, cache
            )
        store.finish_run(result, "finished" if result.complete else "incomplete")
        return result
    except interrupts.Interrupted as e:
        if run_id is not None:
            store.mark_run(run_id, "interrupted")
            e.run_id = run_id
        raise
    except BaseException as e:
        # what was answered is stored already; the run says why it stopped (a KeyboardInterrupt
        # outside the signal handler, or a SystemExit, is an interruption, not a failure)
        if run_id is not None:
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                store.mark_run(run_id, "interrupted")
            else:
                store.mark_run(run_id, "failed", error=f"{type(e).__name__}: {e}"[:2000])
        raise
    finally:
        if own_store:
            store.close()


def _run_plans(
    model: Model,
    plans: Sequence[TaskPlan],
    store: Store,
    run_id: str,
    run_config: dict[str, Any],
    model_spec: str | None,
    progress: bool,
    chunk_size: int | None,
    judge: Model | None,
    warnings: list[str],
    cache: CacheMode = "use",
) -> RunResult:
    flat = [r for p in plans for rs in p.requests for r in rs]
    with Progress(progress) as bar:
        responses, stats = execute(model, flat, store, chunk_size=chunk_size, progress=bar, cache=cache)
    served = served_model_warning(responses)
    if served:
        warnings.append(served)
    n_calls = len({r.key(model.model_id) for r in flat})
    metrics: list[MetricResult] = []
    judge_failed = 0  # judged samples left without a verdict because the judge's call failed for good
    pos = 0
    for p in plans:
        per_sample = []
        for reqs in p.requests:
            per_sample.append(responses[pos : pos + len(reqs)])
            pos += len(reqs)
        with Progress(progress) as bar:
            ctx = ScoringContext(judge=judge, store=store, progress=bar, cache=cache)
            scores = p.task.score_all(p.samples, per_sample, ctx)
        interrupts.check()
        judge_failed += sum(1 for s in scores if JUDGE_CALL_FAILED in str(s.metadata.get("error") or ""))
        # A sample whose model call failed for good has no answer to grade: it keeps no scores
        # (so no analysis reads it as wrong) and says why in its metadata.
        scores = [
            _unanswered(s, resps) if any(r.error is not None for r in resps) else s for s, resps in zip(scores, per_sample)
        ]
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
        answered = [s for s in supported if not s.metadata.get("call_failed")]
        groups, group_note = _groups_with_failures(p, scores, p.task.group_metrics(answered))
        if group_note:
            warnings.append(group_note)
        task_metrics = aggregate(
            p.task.name, answered, expected=p.task.metrics, n_failed=len(supported) - len(answered)
        ) + groups
        metrics.extend(mark_subset(p.task.name, task_metrics, p.subset))
        warnings.extend(p.warnings)
        if p.malformed:
            warnings.append(f"{p.task.name}: {len(p.malformed)} malformed rows skipped (first: {p.malformed[0]})")
        if not p.samples:
            warnings.append(f"{p.task.name}: no samples to evaluate")
    if stats.failed:
        why = ", ".join(f"{n} {reason}" for reason, n in stats.failures.most_common())
        warnings.append(
            f"incomplete: {stats.failed} of {n_calls} model calls failed for good ({why}); their samples are left "
            "out of the metrics, not counted wrong. Re-run the same command to retry only them."
        )
    if judge_failed:
        warnings.append(
            f"incomplete: {judge_failed} judged samples have no verdict because judge calls failed for good; they "
            "are unrated (left out of the means, counted in unparsed). Re-run the same command to retry only those calls."
        )
    return RunResult(
        run_id=run_id,
        model=model_spec or model.model_id,
        tasks=tuple(p.task.name for p in plans),
        metrics=tuple(metrics),
        n_calls_cached=stats.cached,
        n_calls_new=stats.new,
        config=run_config,
        warnings=tuple(warnings),
        n_calls_failed=stats.failed + judge_failed,
    )


def _groups_with_failures(
    p: TaskPlan, scores: Sequence[Score], groups: Sequence[MetricResult]
) -> tuple[list[MetricResult], str | None]:
    """The task's group metrics (computed over answered samples) labelled with the failed calls
    they miss: a "<task>/<group>" row gets its group's n_failed (groups by the task's `strata`), a
    task-level row (a macro mean) the task's; and a note naming where the failures fall, and the
    groups left with no answered item, which the macro mean therefore leaves out."""
    failed = [
        smp for smp, s in zip(p.samples, scores) if s.metadata.get("call_failed") and not s.metadata.get("unsupported")
    ]
    if not failed or not groups:
        return list(groups), None
    key = p.task.strata
    per_group = Counter(str(smp.metadata.get(key)) for smp in failed) if key else Counter()
    out = []
    for m in groups:
        group = m.task[len(p.task.name) + 1 :] if m.task.startswith(p.task.name + "/") else None
        n = per_group.get(group, 0) if group is not None else len(failed)
        out.append(replace(m, n_failed=n) if n else m)
    shown = {m.task[len(p.task.name) + 1 :] for m in groups if m.task.startswith(p.task.name + "/")}
    empty = sorted(g for g in per_group if g not in shown)
    where = f" ({', '.join(f'{g}: {n}' for g, n in per_group.most_common(5))}{', ...' if len(per_group) > 5 else ''})" if per_group else ""
    note = (
        f"{p.task.name}: {len(failed)} failed calls{where}; its per-group rows and macro means cover the answered items only"
        + (f", and {', '.join(empty)} (no answered item) are left out of the macro means" if empty else "")
    )
    return out, note


def _unanswered(score: Score, resps: Sequence[Response]) -> Score:
    error = next(r.error for r in resps if r.error is not None)
    meta = {**dict(score.metadata), "call_failed": True, "error": error}
    return replace(score, values={}, extracted=None, parsed=False, metadata=meta)


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
    if task.judged and judge is not None:
        named.insert(0, f"judge {judge.model_id}")
    return "; ".join(named) or None


def served_model_warning(responses: Sequence[Response]) -> str | None:
    """A warning when the answers of one run say different models answered: several distinct
    `system_fingerprint`s (or, for servers that send none, reported `model`s)."""
    for attr, label in (("system_fingerprint", "system_fingerprint"), ("served_model", "reported model")):
        counts: Counter[str] = Counter(str(getattr(r, attr)) for r in responses if getattr(r, attr))
        if len(counts) > 1:
            seen = ", ".join(f"{v} ({n} answers)" for v, n in counts.most_common())
            return (
                f"the server's model changed between answers of this run: {label} {seen}; "
                "re-run with --cache refresh to answer every call from the model served now"
            )
        if counts:
            return None
    return None


def _response_record(reqs: Sequence[Request], resps: Sequence[Response]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for req, r in zip(reqs, resps):
        if req.kind == "generate":
            record: dict[str, Any] = {"text": r.text, "error": r.error, "finish_reason": r.finish_reason}
            if r.error is None and r.text == "":
                record["empty_reply"] = True  # the model answered nothing (a real, kept answer)
        else:
            record = {"continuations": list(req.continuations), "logprobs": list(r.logprobs), "is_greedy": list(r.is_greedy), "error": r.error}
        for name in ("system_fingerprint", "served_model"):  # what a server said answered
            if getattr(r, name):
                record[name] = getattr(r, name)
        out.append(record)
    return out
