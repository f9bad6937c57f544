"""Sections on capabilities: per-capability scores with a radar, and the law of the weakest link."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

from capeval.analysis.stats import bootstrap_ci
from capeval.report import svg
from capeval.report.data import RunRecord, to_points
from capeval.report.sections.base import (
    Cell,
    Section,
    Table,
    num,
    primary_values,
    task_scale,
)
from capeval.scoring.metrics import higher_is_better


@dataclass(frozen=True)
class CapabilityScore:
    model: str
    capability: str
    value: float
    ci_low: float
    ci_high: float
    n: int


def capability_items(runs: Sequence[RunRecord], run: RunRecord) -> dict[str, dict[str, float]]:
    """capability -> "task/sample id" -> primary-metric value (0-100) for one run.

    A sample's capability is its metadata "capability" (CrossEval rows carry one), else its
    task's single capability tag, else the task's name (see `data._sample_capabilities`). Tasks
    whose primary metric is better when lower (bits per byte) are measures, not capability scores,
    and are left out."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for t in run.result.tasks:
        if t not in run.primary or not higher_is_better(run.primary[t]):
            continue
        scale = task_scale(runs, t, run.primary[t])
        for s, v in primary_values(run, t):
            for c in s.capabilities:
                out[c][f"{t}/{s.sample_id}"] = to_points(v, scale)
    return dict(out)


def capability_scores(runs: Sequence[RunRecord]) -> list[CapabilityScore]:
    """Per run and capability, the mean primary-metric value (0-100) of the samples tagged with it."""
    out: list[CapabilityScore] = []
    for r in runs:
        for c, items in capability_items(runs, r).items():
            mean, lo, hi = bootstrap_ci(list(items.values()))
            out.append(CapabilityScore(r.label, c, mean, lo, hi, len(items)))
    return out


def _ordered_capabilities(scores: Sequence[CapabilityScore]) -> list[str]:
    caps = list(dict.fromkeys(s.capability for s in scores))
    return [c for c in caps if "&" not in c] + [c for c in caps if "&" in c]


def capabilities_section(scores: Sequence[CapabilityScore]) -> Section:
    sec = Section(
        "capabilities",
        "Capabilities",
        "Mean score (0-100) of the samples tagged with each capability, per model, with 95% bootstrap CIs. "
        "A sample's capability is its own tag (CrossEval), else its task's single tag, else the task's name. "
        "Cross capabilities are named 'A & B'.",
    )
    if not scores:
        sec.missing = (
            "none of these runs' samples carry capability scores (a task measured in bits per byte has "
            "none); run a task that declares capabilities "
            "(e.g. `capeval run --tasks crosseval --judge J`, or any task with `capabilities:` in its spec)"
        )
        return sec
    caps = _ordered_capabilities(scores)
    models = list(dict.fromkeys(s.model for s in scores))
    by = {(s.model, s.capability): s for s in scores}
    table = Table("Score per capability (0-100), 95% CI and n", ["capability", *models], [])
    for c in caps:
        row = [Cell(c)]
        for m in models:
            s = by.get((m, c))
            row.append(Cell("–", cls="num") if s is None else Cell(f"{s.value:.1f} [{s.ci_low:.1f}, {s.ci_high:.1f}] n={s.n}", cls="num"))
        table.rows.append(row)
    shared = [c for c in caps if all((m, c) in by for m in models)]
    if len(shared) >= 3:
        series = {m: [by[(m, c)].value for c in shared] for m in models}
        sec.charts.append(Markup(svg.radar_chart(shared, series, "Capabilities per model (0-100)")))
        left_out = [c for c in caps if c not in shared]
        if left_out:
            sec.notes.append(f"left out of the radar (not scored for every model): {', '.join(left_out)}")
    else:
        sec.notes.append(
            f"a radar needs at least 3 capabilities scored for every model (have {len(shared)}); shown as bars instead"
        )
        rows = [svg.Interval(f"{s.model}: {s.capability}", s.value, s.ci_low, s.ci_high) for s in scores]
        sec.charts.append(Markup(svg.interval_chart(rows, "Capability scores with 95% CI", domain=(0, 100))))
    sec.tables.append(table)
    return sec


def weakest_link_section(scores: Sequence[CapabilityScore], threshold: float | None = None) -> Section:
    from capeval.analysis import weakest_link as wl

    sec = Section(
        "weakest-link",
        "Law of the weakest link",
        "For each cross capability whose two individual capabilities differ by more than the threshold, where "
        "the cross score falls: position 0 is the weaker capability's score, 1 the stronger's.",
    )
    if not any("&" in s.capability for s in scores):
        sec.missing = (
            "needs scores of cross capabilities (named 'A & B') and of their parts; run "
            "`capeval run --tasks crosseval --judge J` on each model, or `capeval weakest-link scores.csv`"
        )
        return sec
    table_in: dict[str, dict[str, float]] = defaultdict(dict)
    for s in scores:
        table_in[s.model][s.capability] = s.value
    result = wl.weakest_link(table_in, threshold=wl.DEFAULT_THRESHOLD if threshold is None else threshold)
    sec.notes.extend(f"not analysed: {m}" for m in result.missing)
    if result.n_within_threshold:
        sec.notes.append(
            f"{result.n_within_threshold} cross capabilities have parts within {result.threshold:g} points: no weaker/stronger"
        )
    counts = Table(
        f"Cases by position (threshold {result.threshold:g} points, {result.n_cases} cases)",
        ["model", *[wl.CATEGORY_LABELS[c] for c in wl.CATEGORIES]],
        [],
    )
    for m, per in result.per_model.items():
        counts.rows.append([Cell(m), *[Cell(str(per[c]), cls="num") for c in wl.CATEGORIES]])
    counts.rows.append([Cell("all models", cls="total"), *[Cell(str(result.counts[c]), cls="num total") for c in wl.CATEGORIES]])
    cases = Table(
        "Every case",
        ["model", "cross capability", "weaker", "stronger", "cross score", "position", "category"],
        [
            [
                Cell(c.model),
                Cell(c.cross),
                Cell(f"{c.weaker} {c.weaker_score:.1f}"),
                Cell(f"{c.stronger} {c.stronger_score:.1f}"),
                num(c.cross_score),
                num(c.position, 2),
                Cell(wl.CATEGORY_LABELS[c.category]),
            ]
            for c in result.cases
        ],
    )
    averages = Table(
        f"Mean individual vs mean cross score (all: {result.mean_individual:.2f} vs {result.mean_cross:.2f})",
        ["model", "mean individual", "mean cross", "individual n", "cross n"],
        [[Cell(a.model), num(a.mean_individual, 2), num(a.mean_cross, 2), Cell(str(a.n_individual), cls="num"), Cell(str(a.n_cross), cls="num")] for a in result.averages],
    )
    if result.cases:
        pos = [c.position for c in result.cases]
        # positions explode when the two parts are barely over the threshold apart; keep the axis
        # readable and draw the few far-out cases at its edge
        lo, hi = max(-3.0, min(-1.0, min(pos) - 0.2)), min(4.0, max(2.0, max(pos) + 0.2))
        clipped = sum(1 for p in pos if not lo <= p <= hi)
        if clipped:
            sec.notes.append(f"{clipped} cases lie beyond the plotted range [{lo:g}, {hi:g}] and are drawn at its edge")
        points = [svg.StripPoint(c.position, c.model, f"{c.cross} = {c.cross_score:.1f}") for c in result.cases]
        bands = [(lo, 0.0, "below both"), (0.0, 0.5, "closer to weaker"), (0.5, 1.0, "closer to stronger"), (1.0, hi, "above both")]
        sec.charts.append(
            Markup(svg.strip_density_chart(points, "Cross scores relative to (weaker, stronger)", (lo, hi), bands, [(0.0, "weaker"), (1.0, "stronger")]))
        )
    else:
        sec.notes.append(
            f"no cross capability has both parts scored and more than {result.threshold:g} points apart: nothing to plot"
        )
    sec.tables.extend([counts, cases, averages])
    return sec
