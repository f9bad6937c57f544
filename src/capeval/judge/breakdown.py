"""Breakdowns of judge-scored runs: mean score per capability, category or difficulty, with CIs.

A judge-scored task (CrossEval, IMPACT, MT-Bench) has a breakdown function (Scores -> BreakdownRows);
its `Task.breakdown` is a BreakdownPrinter, which `capeval run` calls with
(store, run_id, console) to print the breakdown after the headline metrics, and its
`group_metrics` turns the main groups into run metrics so they land in the results JSON too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from capeval.analysis.stats import bootstrap_ci, small_sample_warning
from capeval.scoring.metrics import scale_range
from capeval.types import BreakdownRow, MetricResult, Score

BreakdownFn = Callable[[Sequence[Score]], list["BreakdownRow"]]


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


class BreakdownPrinter:
    """The `Task.breakdown` hook `capeval run` calls after the headline metrics:
    rebuilds the task's Scores of the run from the store, breaks them down and prints the table."""

    def __init__(self, task: str, fn: BreakdownFn) -> None:
        self.task = task
        self.fn = fn

    def rows(self, store: Any, run_id: str) -> list[BreakdownRow]:
        return self.fn(scores_from_rows(store.iter_samples(run_id, self.task)))

    def __call__(self, store: Any, run_id: str, console: Any = None) -> list[BreakdownRow]:
        from rich.console import Console

        rows = self.rows(store, run_id)
        console = console or Console()
        for table in breakdown_tables(rows, self.task):
            console.print(table)
        if any(r.n_unrated or r.n_unsupported for r in rows):
            console.print(
                "[dim]n: rated samples; unrated: failed judge verdicts or model calls (counted, not averaged); "
                "unsupported: needs images or tools the model lacks (left out)[/]"
            )
        return rows

    def __repr__(self) -> str:  # shown by `capeval tasks`
        return f"{self.fn.__module__}:{self.fn.__name__}"


def breakdown_metrics(task: str, rows: Sequence[BreakdownRow], groups: Sequence[str]) -> list[MetricResult]:
    """Rows of the given groups as run metrics, task "<task>/<group>:<name>" (for `group_metrics`);
    rows with no rated sample are left out (they have no mean)."""
    out = []
    for r in rows:
        if r.group in groups and r.n > 0:
            unrated = r.n_unrated / (r.n + r.n_unrated)
            out.append(
                MetricResult(
                    f"{task}/{r.group}:{r.name}", r.metric, r.value, r.ci_low, r.ci_high, r.n, unrated,
                    small_sample_warning(r.n, r.ci_low, r.ci_high, scale=scale_range(r.metric, task)),
                )
            )
    return out


def breakdown_tables(rows: Sequence[BreakdownRow], task: str) -> list[Any]:
    """One rich Table per (group, metric): name, value, 95% CI, n, unrated, unsupported."""
    from rich.table import Table

    tables = []
    for group, metric in dict.fromkeys((r.group, r.metric) for r in rows):
        table = Table(title=f"{task} by {group} ({metric})")
        for col in ("name", "value", "95% CI", "n", "unrated", "unsupported"):
            table.add_column(col, justify="left" if col == "name" else "right", overflow="fold")
        for r in rows:
            if (r.group, r.metric) != (group, metric):
                continue
            value = "-" if math.isnan(r.value) else f"{r.value:.2f}"
            ci = "-" if math.isnan(r.ci_low) else f"[{r.ci_low:.2f}, {r.ci_high:.2f}]"
            table.add_row(r.name, value, ci, str(r.n), str(r.n_unrated), str(r.n_unsupported))
        tables.append(table)
    return tables
