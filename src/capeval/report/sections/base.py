"""Building blocks of report sections: cells, tables, sections, number formats, metric scales."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from capeval.analysis import tables
from capeval.report.data import RunRecord, SampleRecord, Scale
from capeval.scoring.metrics import LOWER_IS_BETTER


@dataclass(frozen=True)
class Cell:
    """A table cell: text, optionally a link inside the report and a CSS class (num, warn...)."""

    text: str
    href: str | None = None
    cls: str = ""


@dataclass
class Table:
    caption: str
    headers: list[str]
    rows: list[list[Cell]]
    collapsed: bool = False  # long breakdowns start folded under their caption


@dataclass
class Section:
    """One part of the report. With `missing` set it renders only that note (no fake content)."""

    id: str
    title: str
    intro: str = ""
    charts: list[Markup] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: str | None = None


def num(v: float, digits: int = 1) -> Cell:
    return Cell("–" if v is None or not math.isfinite(v) else f"{v:.{digits}f}", cls="num")


def ci(lo: float, hi: float, digits: int = 1) -> Cell:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return Cell("–", cls="num")
    return Cell(f"[{lo:.{digits}f}, {hi:.{digits}f}]", cls="num")


def task_samples_anchor(run_id: str, task: str) -> str:
    return "samples-" + hashlib.sha1(f"{run_id}\x00{task}".encode()).hexdigest()[:12]


# Metrics that are coefficients in [-1, 1] (a judge-check run's results), never percentages.
COEFFICIENTS = frozenset({"pearson", "spearman", "kendall"})


def task_scale(runs: Sequence[RunRecord], task: str, metric: str) -> Scale:
    """One scale per (task, metric) over all runs, so every model is shown in the same units: the
    scale the metric's name says (a judge's), else the one its values fit (`tables.task_scale`)."""
    if metric in COEFFICIENTS or metric in LOWER_IS_BETTER:
        return "1-100"  # i.e. shown as stored
    vals = [s.scores[metric] for r in runs for s in r.samples.get(task, ()) if metric in s.scores]
    vals += [m.value for r in runs for m in r.result.metrics if m.task == task and m.metric == metric]
    return tables.task_scale(task, metric, vals)


def shown(v: float, scale: Scale) -> float:
    """Per-task tables show 0-1 metrics as percentages and other metrics as stored."""
    return v * 100 if scale == "0-1" else v


def digits(metric: str, scale: Scale) -> int:
    """Decimals that show a metric's differences: 3 for coefficients and bits per byte, 2 for 1-5
    and 1-10 ratings, else 1."""
    return 3 if metric in COEFFICIENTS or metric in LOWER_IS_BETTER else 2 if scale in ("1-5", "1-10") else 1


def primary_values(run: RunRecord, task: str) -> list[tuple[SampleRecord, float]]:
    """Each scored sample's primary-metric value, as the engine aggregates: a sample with no value
    (an unreadable answer) counts as 0; left out are a model call that failed for good
    ("call_failed": not a wrong answer), a judge's failed verdict ("unrated") and samples the model
    could not attempt ("unsupported")."""
    metric = run.primary.get(task)
    samples = run.samples.get(task, ())
    if metric is None or not any(metric in s.scores for s in samples):
        # the task's headline metric is not a per-sample score (a judge-check run's correlations)
        return []
    return [
        (s, float(s.scores.get(metric, 0.0)))
        for s in samples
        if not s.metadata.get("unsupported")
        and not s.metadata.get("call_failed")
        and (metric in s.scores or not s.metadata.get("unrated"))
    ]


def json_number(v: Any) -> float:
    """A number from JSON, where NaN was written as null."""
    return float(v) if isinstance(v, (int, float)) else math.nan
