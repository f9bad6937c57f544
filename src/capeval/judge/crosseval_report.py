"""Breakdowns of judge-scored runs: mean score per capability, category or difficulty, with CIs.

A judge-scored task (CrossEval, IMPACT) names its breakdown function in `Task.settings["breakdown"]`
as "module:function"; the function takes the task's Scores and returns BreakdownRows.
`run_breakdowns(store, run_id)` rebuilds the Scores of a finished run from the store and applies
each task's breakdown, so `capeval run` (and the report) can print them after the headline metrics.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from capeval.analysis.stats import bootstrap_ci
from capeval.types import Score

BreakdownFn = Callable[[Sequence[Score]], list["BreakdownRow"]]


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


def group_means(
    scores: Sequence[Score],
    metric: str,
    group: str,
    key: Callable[[Score], str | None],
    order: Sequence[str] = (),
    seed: int = 0,
) -> list[BreakdownRow]:
    """One row per value of `key(score)`: the mean of `metric` over the scores that carry it.

    Groups listed in `order` come first, in that order; the others follow alphabetically.
    Scores whose key is None are skipped (e.g. samples without a category)."""
    buckets: dict[str, list[Score]] = {}
    for s in scores:
        k = key(s)
        if k is not None:
            buckets.setdefault(k, []).append(s)
    names = [n for n in order if n in buckets] + sorted(n for n in buckets if n not in order)
    rows = []
    for name in names:
        members = buckets[name]
        unsupported = [s for s in members if s.metadata.get("unsupported")]
        supported = [s for s in members if not s.metadata.get("unsupported")]
        values = [float(s.values[metric]) for s in supported if metric in s.values]
        mean, lo, hi = bootstrap_ci(values, seed=seed)
        rows.append(
            BreakdownRow(
                group=group,
                name=name,
                metric=metric,
                value=mean,
                ci_low=lo,
                ci_high=hi,
                n=len(values),
                n_unrated=len(supported) - len(values),
                n_unsupported=len(unsupported),
            )
        )
    return rows


def metadata_key(field: str) -> Callable[[Score], str | None]:
    def key(s: Score) -> str | None:
        v = s.metadata.get(field)
        return None if v is None or v == "" else str(v)

    return key


def scores_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[Score]:
    """Scores rebuilt from `Store.iter_samples` rows (metadata there merges sample and score)."""
    out = []
    for r in rows:
        out.append(
            Score(
                sample_id=r["sample_id"],
                task=r["task"],
                values=dict(r.get("scores") or {}),
                extracted=r.get("extracted"),
                parsed=bool(r.get("parsed", True)),
                target=r.get("target"),
                metadata=dict(r.get("metadata") or {}),
            )
        )
    return out


def load_breakdown_fn(spec: str) -> BreakdownFn:
    module, _, name = spec.partition(":")
    fn: BreakdownFn = getattr(importlib.import_module(module), name)
    return fn


def run_breakdowns(store: Any, run_id: str, tasks: Sequence[str] | None = None) -> dict[str, list[BreakdownRow]]:
    """task name -> breakdown rows, for each task of the run that declares `settings["breakdown"]`."""
    from capeval.tasks import get_task

    run = store.run(run_id)
    if run is None:
        return {}
    import json

    names = list(tasks) if tasks is not None else list(json.loads(run["tasks"]))
    out: dict[str, list[BreakdownRow]] = {}
    for name in names:
        try:
            spec = get_task(name).settings.get("breakdown")
        except Exception:  # a task from a YAML folder that is no longer on the path: no breakdown
            continue
        if not spec:
            continue
        scores = scores_from_rows(store.iter_samples(run["run_id"], name))
        out[name] = load_breakdown_fn(str(spec))(scores)
    return out


def breakdown_table(rows: Sequence[BreakdownRow], title: str = "") -> Any:
    """A rich Table: group, name, metric, value, 95% CI, n, unrated, unsupported."""
    from rich.table import Table

    table = Table(title=title or None)
    for col in ("group", "name", "metric", "value", "95% CI", "n", "unrated", "unsupported"):
        table.add_column(col, justify="right" if col in {"value", "n", "unrated", "unsupported"} else "left")
    for r in rows:
        value = "-" if math.isnan(r.value) else f"{r.value:.2f}"
        ci = "-" if math.isnan(r.ci_low) else f"[{r.ci_low:.2f}, {r.ci_high:.2f}]"
        table.add_row(r.group, r.name, r.metric, value, ci, str(r.n), str(r.n_unrated), str(r.n_unsupported))
    return table


def print_run_breakdowns(store: Any, run_id: str, console: Any = None) -> dict[str, list[BreakdownRow]]:
    """Print every breakdown of a finished run (the hook `capeval run` calls after its metrics)."""
    from rich.console import Console

    console = console or Console()
    found = run_breakdowns(store, run_id)
    for task, rows in found.items():
        console.print(breakdown_table(rows, title=f"{task}: breakdown"))
    return found
