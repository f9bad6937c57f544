"""Sections on the runs' own numbers: the headline, per-task tables, paired comparisons."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

from capeval.report import svg
from capeval.report.data import RunRecord, to_points
from capeval.report.sections.base import (
    Cell,
    Section,
    Table,
    ci,
    digits,
    num,
    primary_values,
    shown,
    task_samples_anchor,
    task_scale,
)
from capeval.scoring.metrics import higher_is_better, metric_label
from capeval.tasks.subsets import Subset


def headline_section(runs: Sequence[RunRecord]) -> Section:
    from capeval.analysis.stats import headline_score

    sec = Section(
        "headline",
        "Headline",
        "One number per run: the mean over tasks of each task's primary metric (every task weighs the same), "
        "with a 95% bootstrap CI that resamples items within tasks. On a 0-100 scale (accuracy in percent; "
        "1-5 ratings mapped as CrossEval does, (r - 1) * 24.75 + 1, and MT-Bench's 1-10 scores likewise, (r - 1) * 11 + 1).",
    )
    rows: list[svg.Interval] = []
    table = Table("Headline number per run", ["model", "run", "headline", "95% CI", "tasks", "items"], [])
    measures = sorted({t for r in runs for t in r.result.tasks if t in r.primary and not higher_is_better(r.primary[t])})
    left_out = (
        f"{', '.join(measures)} (measured in {', '.join(sorted({r.primary[t] for r in runs for t in measures if t in r.primary}))}, "
        "where lower is better: not a score to average with accuracies; see the per-task results)"
    )
    for r in runs:
        per_task = {}
        for t in r.result.tasks:
            if t in measures:
                continue
            vals = primary_values(r, t)
            if not vals:
                continue
            scale = task_scale(runs, t, r.primary[t])
            per_task[t] = [to_points(v, scale) for _, v in vals]
        if not per_task:
            if not any(t in measures for t in r.result.tasks):
                sec.notes.append(f"run {r.run_id} has no scored samples")
            continue
        h = headline_score(per_task, metrics=dict(r.primary))
        rows.append(svg.Interval(r.label, h.value, h.ci_low, h.ci_high, href=f"#run-{r.run_id}"))
        table.rows.append(
            [Cell(r.label), Cell(r.run_id, href=f"#run-{r.run_id}"), num(h.value), ci(h.ci_low, h.ci_high), Cell(str(h.n_tasks), cls="num"), Cell(str(h.n_items), cls="num")]
        )
    if not rows:
        sec.missing = (
            f"no task of these runs is scored on a 0-100 scale: {left_out}" if measures
            else "no scored samples in these runs; run `capeval run --model M --tasks T` first"
        )
        return sec
    if measures:
        sec.notes.append(f"left out of the headline: {left_out}")
    sec.charts.append(Markup(svg.interval_chart(rows, "Headline number per run with 95% CI", domain=(0, 100))))
    sec.tables.append(table)
    return sec


def tasks_section(runs: Sequence[RunRecord]) -> Section:
    sec = Section(
        "tasks",
        "Per-task results",
        "Every metric of every task, with its 95% bootstrap CI, number of samples and the share of outputs "
        "whose answer could not be read (counted as wrong). Model names link to that run's samples of the task.",
    )
    tasks = list(dict.fromkeys(t for r in runs for t in r.result.tasks))
    for t in tasks:
        # "items" (e.g. "sample 40/80") appears when a run computed the task's metrics on a subset
        subset = any(m.subset for r in runs for m in r.result.metrics if m.task == t)
        columns = ["model", "metric", "value", "95% CI", "n", *(["items"] if subset else []), "unparsed", "note"]
        table = Table(t, columns, [])
        chart_rows: list[svg.Interval] = []
        graders = {r.label: (r.result.config.get("graders") or {}).get(t) for r in runs if t in r.result.tasks}
        for label, grader in graders.items():
            if grader:
                sec.notes.append(f"{label}: {t} graded by {grader}")
        if len(set(graders.values())) > 1:
            sec.notes.append(
                f"WARNING: {t} was graded differently across runs ("
                + "; ".join(f"{label}: {g or 'extraction only'}" for label, g in graders.items())
                + "): its numbers are not directly comparable"
            )
        for r in runs:
            if t not in r.result.tasks:
                continue
            how = (r.result.config.get("subsets") or {}).get(t)
            if how:
                sec.notes.append(f"{r.label}: {t} was evaluated on a {Subset.from_config(how).describe()}")
            for m in r.result.metrics:
                if m.task != t:
                    continue
                scale = task_scale(runs, t, m.metric)
                table.rows.append(
                    [
                        Cell(r.label, href=f"#{task_samples_anchor(r.run_id, t)}"),
                        Cell(metric_label(m.metric)),
                        num(shown(m.value, scale), digits(m.metric, scale)),
                        ci(shown(m.ci_low, scale), shown(m.ci_high, scale), digits(m.metric, scale)),
                        Cell(str(m.n), cls="num"),
                        *([Cell(m.subset or "all", cls="warn" if m.subset else "")] if subset else []),
                        Cell(f"{m.unparsed_rate * 100:.1f}%", cls="num warn" if m.unparsed_rate > 0.1 else "num"),
                        Cell(m.warning or "", cls="warn" if m.warning else ""),
                    ]
                )
                if m.metric == r.primary.get(t):
                    chart_rows.append(
                        svg.Interval(
                            r.label, shown(m.value, scale), shown(m.ci_low, scale), shown(m.ci_high, scale), href=f"#{task_samples_anchor(r.run_id, t)}"
                        )
                    )
        if chart_rows:
            metric = next(r.primary[t] for r in runs if t in r.primary)
            scale = task_scale(runs, t, metric)
            sec.charts.append(
                Markup(
                    svg.interval_chart(
                        chart_rows,
                        f"{t}: {metric_label(metric)}{' (%)' if scale == '0-1' else ''} with 95% CI",
                        domain=(0, 100) if scale == "0-1" else (1, 5) if scale == "1-5" else (1, 10) if scale == "1-10" else None,
                    )
                )
            )
        sec.tables.append(table)
        breakdown = _breakdown_table(runs, t)
        if breakdown.rows:
            sec.tables.append(breakdown)
    warnings = [f"{r.label}: {w}" for r in runs for w in r.result.warnings]
    sec.notes.extend(warnings)
    return sec


def _breakdown_table(runs: Sequence[RunRecord], task: str) -> Table:
    """The task's group metrics (per subject, capability, difficulty...: task "<task>/<group>")."""
    table = Table(f"{task}: breakdown by group", ["group", "model", "metric", "value", "95% CI", "n"], [], collapsed=True)
    prefix = task + "/"
    for r in runs:
        for m in r.result.metrics:
            if not m.task.startswith(prefix):
                continue
            scale = task_scale(runs, task, m.metric)
            d = digits(m.metric, scale)
            table.rows.append(
                [
                    Cell(m.task[len(prefix) :]),
                    Cell(r.label),
                    Cell(metric_label(m.metric)),
                    num(shown(m.value, scale), d),
                    ci(shown(m.ci_low, scale), shown(m.ci_high, scale), d),
                    Cell(str(m.n), cls="num"),
                ]
            )
    table.rows.sort(key=lambda row: row[0].text)
    return table


# Resamples per paired test: pairs grow with the square of the runs, and 2,000 resamples already
# give p-values to about +/-0.005 near 0.05 (the CLI's `capeval compare` uses 10,000).
COMPARISON_RESAMPLES = 2000


def comparisons_section(runs: Sequence[RunRecord], seed: int = 0, n_resamples: int = COMPARISON_RESAMPLES) -> Section:
    """Every pair of runs on a shared task: a paired test on the items both answered."""
    from capeval.analysis.stats import compare_paired

    sec = Section(
        "comparisons",
        "Is A better than B?",
        "For every pair of runs on the same task: the difference of the primary metric on the items both "
        f"answered, its paired-bootstrap 95% CI, a paired permutation test's p-value ({n_resamples:,} resamples), and the smallest "
        "difference these items can detect (80% power, alpha 0.05). In points for 0-1 metrics.",
    )
    table = Table("Paired comparisons", ["task", "A", "B", "A - B", "95% CI", "p", "detectable", "items", "verdict"], [])
    tasks = list(dict.fromkeys(t for r in runs for t in r.result.tasks))
    for t in tasks:
        members = [r for r in runs if t in r.primary]
        scale = task_scale(runs, t, members[0].primary[t]) if members else "0-1"
        per_item = {r.run_id: {s.sample_id: v for s, v in primary_values(r, t)} for r in members}
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                if a.primary[t] != b.primary[t] or not set(per_item[a.run_id]) & set(per_item[b.run_id]):
                    continue
                c = compare_paired(
                    per_item[a.run_id], per_item[b.run_id], n_resamples=n_resamples, seed=seed, task=t, metric=a.primary[t]
                )
                better = {"a": a.label, "b": b.label}.get(c.winner or "")
                verdict = f"{better} is better" if better else "no significant difference"
                if c.n_only_a or c.n_only_b:
                    verdict += f" (runs evaluated different items: {c.n} shared, {c.n_only_a + c.n_only_b} left out)"
                d = digits(c.metric, scale)
                table.rows.append(
                    [
                        Cell(t if higher_is_better(c.metric) else f"{t} ({metric_label(c.metric)})"),
                        Cell(a.label),
                        Cell(b.label),
                        num(shown(c.diff, scale), d),
                        ci(shown(c.ci_low, scale), shown(c.ci_high, scale), d),
                        num(c.p_value, 4),
                        num(shown(c.mdd, scale), d),
                        Cell(str(c.n), cls="num"),
                        Cell(verdict, cls="" if c.significant else "warn"),
                    ]
                )
    if not table.rows:
        sec.missing = "needs two or more runs of the same task; run `capeval run` with another --model and pass both runs"
        return sec
    sec.tables.append(table)
    return sec
