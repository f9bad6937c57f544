"""`capeval run` with no arguments: both bundled models on one seeded sample, a paired test, a report."""

from __future__ import annotations

import gc
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from capeval.analysis.stats import PairedComparison
from capeval.formatting import fmt_ci, fmt_number
from capeval.scoring.metrics import metric_label
from capeval.types import RunResult


@dataclass(frozen=True)
class DefaultJob:
    """What `capeval run` evaluates when given no model and no task (sizes measured: see README)."""

    models: tuple[str, ...]
    tasks: tuple[str, ...]
    sample: int
    shots: int | None
    seed: int = 1234


DEFAULT_JOB = DefaultJob(
    models=("smollm2-135m-instruct", "gemma3-270m"),
    tasks=("mtbench-bpb", "mtbench-category"),
    sample=40,
    shots=None,
)


def better_model(c: PairedComparison, model_a: str, model_b: str) -> str | None:
    """The model a significant paired comparison favours (`compare_paired(a, b)`: c.diff is a - b),
    by the metric's direction (lower bits per byte wins); None when the test found no difference."""
    return {"a": model_a, "b": model_b}.get(c.winner or "")


def side_by_side(results: Sequence[RunResult]) -> Table:
    """Each task's metrics (task-level rows) for every model, one column per model."""
    table = Table(title="the same items, the same prompts: " + " vs ".join(r.model for r in results))
    table.add_column("task")
    table.add_column("metric")
    for r in results:
        table.add_column(f"{r.model}\nvalue [95% CI]", justify="right")
    table.add_column("n", justify="right")
    table.add_column("items", justify="right")
    first = results[0]
    for m in first.metrics:
        if m.task not in first.tasks:  # per-group rows stay in each run's own table and the report
            continue
        cells = []
        for r in results:
            other = r.metric(m.task, m.metric)
            cells.append(f"{fmt_number(other.value, missing='nan')} {fmt_ci(other.ci_low, other.ci_high, missing='nan')}")
        table.add_row(m.task, metric_label(m.metric), *cells, str(m.n), m.subset or "all")
    return table


def run_default_job(
    job: DefaultJob = DEFAULT_JOB,
    db: Path | None = None,
    json_out: Path | None = None,
    progress: bool = True,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Evaluate every model of `job` on the same seeded sample, compare them pairwise on those
    items (paired permutation test) and write the HTML report; print all of it and return it."""
    from capeval.analysis.stats import compare_paired
    from capeval.analysis.tables import load_run_scores
    from capeval.cli import console
    from capeval.commands_core import subset_lines
    from capeval.report.builder import ReportOptions, build_report
    from capeval.runspec import RunSpec, execute, resolve
    from capeval.store import Store

    console.print(
        f"[bold]capeval's default job[/]: {' vs '.join(job.models)} on the same seeded sample of {job.sample} items "
        f"of {', '.join(job.tasks)} (seed {job.seed}), offline. Your own: capeval run --model M --tasks T --sample N"
    )
    results: list[RunResult] = []
    with Store(db) as store:
        for model in job.models:
            spec = RunSpec(
                model=model, tasks=list(job.tasks), shots=job.shots, seed=job.seed, sample=job.sample, db=db,
                save_every=chunk_size, progress=progress,
            )
            resolved = resolve(spec)
            results.append(execute(resolved, store).result)
            del resolved
            gc.collect()  # one model in memory at a time
        console.print(side_by_side(results))
        for line in subset_lines(results[0]):
            console.print(f"[cyan]subset[/] {line}")
        for r in results:
            for w in r.warnings:
                console.print(f"[yellow]warning[/] {r.model}: {w}")
        scores = [load_run_scores(store, r.run_id) for r in results]
        comparisons = []
        a, b = scores[0], scores[1]
        for t in job.tasks:
            metric = a.primary(t)
            c = compare_paired(b.per_item(t, metric), a.per_item(t, metric), task=t, metric=metric)
            better = better_model(c, b.model, a.model)
            comparisons.append({**asdict(c), "better": better})
            verdict = (
                f"[bold green]{better} is better[/]" if better
                else f"[yellow]no significant difference[/]: {c.n} items detect differences of {c.mdd:.3f} or more "
                "(80% power); a larger --sample detects smaller ones"
            )
            console.print(
                f"paired test on {t} ({metric_label(metric)}, the same {c.n} items): {b.model} - {a.model} = {c.diff:+.3f}, "
                f"95% CI [{c.ci_low:+.3f}, {c.ci_high:+.3f}], p = {c.p_value:.4f} ({c.test}): {verdict}"
            )
        report_path = store.path.parent / "reports" / f"{results[0].run_id}-vs-{results[-1].run_id}.html"
        build_report(store, [r.run_id for r in results], report_path, ReportOptions(title="capeval: the default job"))
        out = {
            "runs": [asdict(r) for r in results],
            "comparisons": comparisons,
            "report": str(report_path),
        }
        json_path = json_out or store.path.parent / "results" / f"{results[0].run_id}-vs-{results[-1].run_id}.json"
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(out, indent=2, default=str))
    console.print(f"report: {report_path}")
    console.print(f"results: {json_path}   runs: {', '.join(r.run_id for r in results)}" + (f" --db {db}" if db else ""))
    return out
