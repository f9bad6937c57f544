"""Report sections: each turns plain data into tables and charts, or says which command makes its data."""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from capeval.analysis.stats import bootstrap_ci
from capeval.report import svg
from capeval.report.data import RunRecord, SampleRecord, Scale, detect_scale, to_points


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


def _task_scale(runs: Sequence[RunRecord], task: str, metric: str) -> Scale:
    """One scale per (task, metric) over all runs, so every model is shown in the same units."""
    vals = [s.scores[metric] for r in runs for s in r.samples.get(task, ()) if metric in s.scores]
    vals += [m.value for r in runs for m in r.result.metrics if m.task == task and m.metric == metric]
    return detect_scale(vals)


def _shown(v: float, scale: Scale) -> float:
    """Per-task tables show 0-1 metrics as percentages and other metrics as stored."""
    return v * 100 if scale == "0-1" else v


def _primary_values(run: RunRecord, task: str) -> list[tuple[SampleRecord, float]]:
    """Each scored sample's primary-metric value, as the engine aggregates: a sample with no value
    (failed call, unreadable answer) counts as 0, except a judge's failed verdict ("unrated"),
    which is left out, as are samples the model could not attempt ("unsupported")."""
    metric = run.primary.get(task)
    if metric is None:
        return []
    return [
        (s, float(s.scores.get(metric, 0.0)))
        for s in run.samples.get(task, ())
        if not s.metadata.get("unsupported") and (metric in s.scores or not s.metadata.get("unrated"))
    ]


# ---- headline --------------------------------------------------------------------------------


def headline_section(runs: Sequence[RunRecord]) -> Section:
    from capeval.analysis.stats import headline_score

    sec = Section(
        "headline",
        "Headline",
        "One number per run: the mean over tasks of each task's primary metric (every task weighs the same), "
        "with a 95% bootstrap CI that resamples items within tasks. On a 0-100 scale (accuracy in percent; "
        "1-5 ratings mapped as CrossEval does, (r - 1) * 24.75 + 1).",
    )
    rows: list[svg.Interval] = []
    table = Table("Headline number per run", ["model", "run", "headline", "95% CI", "tasks", "items"], [])
    for r in runs:
        per_task = {}
        for t in r.result.tasks:
            vals = _primary_values(r, t)
            if not vals:
                continue
            scale = _task_scale(runs, t, r.primary[t])
            per_task[t] = [to_points(v, scale) for _, v in vals]
        if not per_task:
            sec.notes.append(f"run {r.run_id} has no scored samples")
            continue
        h = headline_score(per_task, metrics=dict(r.primary))
        rows.append(svg.Interval(r.label, h.value, h.ci_low, h.ci_high, href=f"#run-{r.run_id}"))
        table.rows.append(
            [Cell(r.label), Cell(r.run_id, href=f"#run-{r.run_id}"), num(h.value), ci(h.ci_low, h.ci_high), Cell(str(h.n_tasks), cls="num"), Cell(str(h.n_items), cls="num")]
        )
    if not rows:
        sec.missing = "no scored samples in these runs; run `capeval run --model M --tasks T` first"
        return sec
    sec.charts.append(Markup(svg.interval_chart(rows, "Headline number per run with 95% CI", domain=(0, 100))))
    sec.tables.append(table)
    return sec


# ---- per task --------------------------------------------------------------------------------


def tasks_section(runs: Sequence[RunRecord]) -> Section:
    sec = Section(
        "tasks",
        "Per-task results",
        "Every metric of every task, with its 95% bootstrap CI, number of samples and the share of outputs "
        "whose answer could not be read (counted as wrong). Model names link to that run's samples of the task.",
    )
    tasks = list(dict.fromkeys(t for r in runs for t in r.result.tasks))
    for t in tasks:
        table = Table(t, ["model", "metric", "value", "95% CI", "n", "unparsed", "note"], [])
        chart_rows: list[svg.Interval] = []
        for r in runs:
            if t not in r.result.tasks:
                continue
            for m in r.result.metrics:
                if m.task != t:
                    continue
                scale = _task_scale(runs, t, m.metric)
                table.rows.append(
                    [
                        Cell(r.label, href=f"#{task_samples_anchor(r.run_id, t)}"),
                        Cell(m.metric),
                        num(_shown(m.value, scale), 2 if scale == "1-5" else 1),
                        ci(_shown(m.ci_low, scale), _shown(m.ci_high, scale), 2 if scale == "1-5" else 1),
                        Cell(str(m.n), cls="num"),
                        Cell(f"{m.unparsed_rate * 100:.1f}%", cls="num warn" if m.unparsed_rate > 0.1 else "num"),
                        Cell(m.warning or "", cls="warn" if m.warning else ""),
                    ]
                )
                if m.metric == r.primary.get(t):
                    chart_rows.append(
                        svg.Interval(
                            r.label, _shown(m.value, scale), _shown(m.ci_low, scale), _shown(m.ci_high, scale), href=f"#{task_samples_anchor(r.run_id, t)}"
                        )
                    )
        if chart_rows:
            metric = next(r.primary[t] for r in runs if t in r.primary)
            scale = _task_scale(runs, t, metric)
            sec.charts.append(
                Markup(
                    svg.interval_chart(
                        chart_rows,
                        f"{t}: {metric}{' (%)' if scale == '0-1' else ''} with 95% CI",
                        domain=(0, 100) if scale == "0-1" else (1, 5) if scale == "1-5" else None,
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
            scale = _task_scale(runs, task, m.metric)
            digits = 2 if scale == "1-5" else 1
            table.rows.append(
                [
                    Cell(m.task[len(prefix) :]),
                    Cell(r.label),
                    Cell(m.metric),
                    num(_shown(m.value, scale), digits),
                    ci(_shown(m.ci_low, scale), _shown(m.ci_high, scale), digits),
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
        scale = _task_scale(runs, t, members[0].primary[t]) if members else "0-1"
        per_item = {r.run_id: {s.sample_id: v for s, v in _primary_values(r, t)} for r in members}
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                if a.primary[t] != b.primary[t] or not set(per_item[a.run_id]) & set(per_item[b.run_id]):
                    continue
                c = compare_paired(
                    per_item[a.run_id], per_item[b.run_id], n_resamples=n_resamples, seed=seed, task=t, metric=a.primary[t]
                )
                better = a.label if c.diff > 0 else b.label
                verdict = f"{better} is better" if c.significant else "no significant difference"
                table.rows.append(
                    [
                        Cell(t),
                        Cell(a.label),
                        Cell(b.label),
                        num(_shown(c.diff, scale), 2 if scale == "1-5" else 1),
                        ci(_shown(c.ci_low, scale), _shown(c.ci_high, scale), 2 if scale == "1-5" else 1),
                        num(c.p_value, 4),
                        num(_shown(c.mdd, scale), 2 if scale == "1-5" else 1),
                        Cell(str(c.n), cls="num"),
                        Cell(verdict, cls="" if c.significant else "warn"),
                    ]
                )
    if not table.rows:
        sec.missing = "needs two or more runs of the same task; run `capeval run` with another --model and pass both runs"
        return sec
    sec.tables.append(table)
    return sec


# ---- capabilities ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CapabilityScore:
    model: str
    capability: str
    value: float
    ci_low: float
    ci_high: float
    n: int


def capability_scores(runs: Sequence[RunRecord]) -> list[CapabilityScore]:
    """Per run and capability, the mean primary-metric value (0-100) of the samples tagged with it.

    A sample's capability is its metadata "capability" (CrossEval rows carry one), else its
    task's single capability tag, else the task's name (see `data._sample_capabilities`)."""
    out: list[CapabilityScore] = []
    for r in runs:
        by_cap: dict[str, list[float]] = defaultdict(list)
        for t in r.result.tasks:
            if t not in r.primary:
                continue
            scale = _task_scale(runs, t, r.primary[t])
            for s, v in _primary_values(r, t):
                for c in s.capabilities:
                    by_cap[c].append(to_points(v, scale))
        for c, vals in by_cap.items():
            mean, lo, hi = bootstrap_ci(vals)
            out.append(CapabilityScore(r.label, c, mean, lo, hi, len(vals)))
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
            "none of these runs' samples carry capability tags; run a task that declares capabilities "
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


# ---- weakest link ----------------------------------------------------------------------------


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


# ---- arena -----------------------------------------------------------------------------------


def arena_section(votes_by_source: Mapping[str, Sequence[Any]], n_bootstrap: int = 1000, seed: int = 0) -> Section:
    """`votes_by_source`: source ("human", "judge"...) -> battles (capeval.analysis.arena.Battle)."""
    from capeval.analysis.arena import arena_leaderboard

    sec = Section(
        "arena",
        "Arena leaderboard",
        f"Bradley-Terry ratings (Chatbot Arena's scale) from every pairwise vote in the store, per source, with "
        f"{n_bootstrap}-resample bootstrap 95% CIs; online Elo (K=4) for comparison. Rank = 1 + models whose CI "
        "lies entirely above.",
    )
    if not any(votes_by_source.values()):
        sec.missing = (
            "no pairwise votes in the store; collect them with `capeval serve` (people vote in battles) "
            "or `capeval judge --pairwise` (judge verdicts)"
        )
        return sec
    for source, battles in votes_by_source.items():
        if not battles:
            continue
        lb = arena_leaderboard(list(battles), n_bootstrap=n_bootstrap, seed=seed)
        sec.charts.append(
            Markup(
                svg.interval_chart(
                    [svg.Interval(r.model, r.rating, r.ci_low, r.ci_high) for r in lb.ratings],
                    f"{source} votes: Bradley-Terry rating with 95% CI",
                    bars=False,
                )
            )
        )
        labels = list(lb.win_rates.models)
        matrix = [[math.nan if v is None else v for v in row] for row in lb.win_rates.win_rate]
        sec.charts.append(Markup(svg.heatmap_chart(labels, matrix, f"{source} votes: win rate, row vs column")))
        sec.tables.append(
            Table(
                f"{source} votes: {lb.n_battles} battles",
                ["rank", "model", "rating", "95% CI", "online Elo", "battles", "wins", "losses", "ties"],
                [
                    [
                        Cell(str(r.rank), cls="num"),
                        Cell(r.model),
                        num(r.rating, 0),
                        ci(r.ci_low, r.ci_high, 0),
                        num(r.elo, 0),
                        Cell(str(r.n_battles), cls="num"),
                        Cell(str(r.wins), cls="num"),
                        Cell(str(r.losses), cls="num"),
                        Cell(str(r.ties), cls="num"),
                    ]
                    for r in lb.ratings
                ],
            )
        )
        if lb.unstable_pairs:
            pairs = "; ".join(f"{a} / {b}" for a, b in lb.unstable_pairs)
            sec.notes.append(f"{source} votes: overlapping CIs, order not established between {pairs}")
        else:
            sec.notes.append(f"{source} votes: every adjacent pair's CIs are disjoint; the ranking is stable")
    return sec


# ---- samples ---------------------------------------------------------------------------------


@dataclass
class SampleGroup:
    """One run's samples of one task, as rendered: `shown` may be a prefix of all of them."""

    run: RunRecord
    task: str
    anchor: str
    primary: str | None
    shown: list[SampleRecord]
    total: int


def sample_groups(runs: Sequence[RunRecord], max_per_task: int | None) -> list[SampleGroup]:
    out = []
    for r in runs:
        for t, samples in r.samples.items():
            shown = list(samples if max_per_task is None else samples[:max_per_task])
            out.append(SampleGroup(r, t, task_samples_anchor(r.run_id, t), r.primary.get(t), shown, len(samples)))
    return out


# ---- prompt sensitivity ----------------------------------------------------------------------


def sensitivity_section(runs: Sequence[RunRecord]) -> Section:
    """Runs of one model that differ only in the prompt variant (`capeval run --prompt-variants N`)."""
    from capeval.analysis.sensitivity import summarize, variant_of

    sec = Section(
        "sensitivity",
        "Prompt sensitivity",
        "The same model and tasks under paraphrased prompts: the spread (highest minus lowest) is how much of "
        "a score is the prompt's doing. Flagged where it exceeds the mean 95% CI half-width.",
    )
    sweeps: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in runs:
        rest = {k: v for k, v in r.prompt_config.items() if k != "variant"}
        sweeps[(r.model, repr(sorted(rest.items())))].append(r)
    spreads: list[svg.Spread] = []
    table = Table(
        "Primary metric per prompt variant",
        ["model", "task", "metric", "per variant", "mean", "std", "spread", "mean CI half-width", "flag"],
        [],
    )
    for (model, _), members in sweeps.items():
        if len({variant_of(r.result) for r in members}) < 2:
            continue
        for row in summarize([r.result for r in members]):
            if not any(row.metric == r.primary.get(row.task) for r in members):
                continue
            scale = _task_scale(runs, row.task, row.metric)
            vals = [(f"v{v}", _shown(x, scale)) for v, x in zip(row.variants, row.values)]
            spreads.append(svg.Spread(f"{model} · {row.task}", vals))
            table.rows.append(
                [
                    Cell(model),
                    Cell(row.task),
                    Cell(row.metric),
                    Cell("; ".join(f"{n}: {v:.1f}" for n, v in vals)),
                    num(_shown(row.mean, scale)),
                    num(_shown(row.std, scale)),
                    num(_shown(row.spread, scale)),
                    num(_shown(row.ci_half_width, scale)),
                    Cell("spread > CI" if row.exceeds_ci else "within CI", cls="warn" if row.exceeds_ci else ""),
                ]
            )
    if not spreads:
        sec.missing = (
            "needs runs of one model under two or more prompt variants; run "
            "`capeval run --model M --tasks T --prompt-variants 3` and pass all its runs to `capeval report`"
        )
        return sec
    sec.charts.append(Markup(svg.range_chart(spreads, "Primary metric across prompt variants")))
    sec.tables.append(table)
    return sec


# ---- judge vs human --------------------------------------------------------------------------


@dataclass(frozen=True)
class RatingPair:
    """A judge's score and a person's rating of the same response."""

    judge: float
    human: float
    capability: str
    anchor: str  # the sample's element id in the report


def correlation_section(
    pairs: Sequence[RatingPair],
    votes: Sequence[tuple[str, str]] = (),
    checks: Sequence[tuple[str, Mapping[str, Any]]] = (),
    n_resamples: int = 1000,
    seed: int = 0,
) -> Section:
    """Judge-vs-human agreement from three inputs: `pairs` (judged samples of the runs that people
    also rated), `votes` ((judge winner, human winner) of the same battle) and `checks` ((label,
    JSON of `capeval judge-check --json`): the meta-evaluation on responses with human ratings)."""
    from capeval.analysis.correlation import (
        CROSSEVAL_PEARSON_ANCHOR,
        correlations,
        correlations_by_group,
        pairwise_agreement,
    )

    sec = Section(
        "judge-human",
        "Judge vs human",
        "How well the judge's score of a response tracks people's ratings of it (response level; a response's "
        f"human ratings are averaged), with bootstrap 95% CIs. CrossEval's best judge reached Pearson about "
        f"{CROSSEVAL_PEARSON_ANCHOR}.",
    )
    if len(pairs) < 3 and not votes and not checks:
        sec.missing = (
            f"needs responses rated by both the judge and people (have {len(pairs)} in these runs); run "
            "`capeval judge-check --judge J --data FILE --json check.json` and pass `--judge-check check.json`, "
            "or collect ratings and votes of judged runs with `capeval serve`"
        )
        return sec
    header = ["source", "scope", "method", "coefficient", "95% CI", "p", "responses"]
    rows: list[list[Cell]] = []
    if len(pairs) >= 3:
        js = [p.judge for p in pairs]
        hs = [p.human for p in pairs]
        for scope, cs in [("all", correlations(js, hs, n_resamples=n_resamples, seed=seed))] + list(
            correlations_by_group(js, hs, [p.capability for p in pairs], n_resamples=n_resamples, seed=seed).items()
        ):
            for c in cs:
                if scope != "all" and c.method != "pearson":
                    continue  # per capability, Pearson only, as CrossEval reports it
                rows.append([Cell("these runs"), Cell(str(scope)), Cell(c.method), num(c.value, 3), ci(c.ci_low, c.ci_high, 3), num(c.p_value, 4), Cell(str(c.n), cls="num")])
        sec.charts.append(Markup(svg.scatter_chart(hs, js, "These runs: judge score vs mean human rating", "mean human rating", "judge score")))
    for label, d in checks:
        source = f"{label} ({d.get('judge', '?')}, {d.get('recipe', '?')})"
        scopes = [("all", d.get("overall") or {})] + [(str(g), v) for g, v in (d.get("by_capability") or {}).items()]
        for scope, by_method in scopes:
            for method, c in by_method.items():
                if scope != "all" and method != "pearson":
                    continue
                rows.append([Cell(source), Cell(scope), Cell(method), num(_f(c.get("value")), 3), ci(_f(c.get("ci_low")), _f(c.get("ci_high")), 3), num(_f(c.get("p_value")), 4), Cell(str(c.get("n", "")), cls="num")])
        scored = [r for r in d.get("rows") or [] if r.get("judge_score") is not None and r.get("human_mean") is not None]
        if len(scored) >= 3:
            sec.charts.append(
                Markup(svg.scatter_chart([r["human_mean"] for r in scored], [r["judge_score"] for r in scored], f"{label}: judge vs mean human rating", "mean human rating", "judge rating"))
            )
        ablation = [a for a in d.get("ablation") or [] if isinstance(a.get("pearson"), Mapping)]
        if ablation:
            sec.charts.append(
                Markup(
                    svg.interval_chart(
                        [svg.Interval(f"{a['n_references']} references", _f(a["pearson"].get("value")), _f(a["pearson"].get("ci_low")), _f(a["pearson"].get("ci_high"))) for a in ablation],
                        f"{label}: Pearson by number of references shown",
                        domain=(-1.0, 1.0),
                        bars=False,
                    )
                )
            )
        verdicts = d.get("verdicts") or {}
        if verdicts.get("n"):
            sec.notes.append(f"{label}: {verdicts.get('failed', 0)} of {verdicts['n']} verdicts could not be read and are left out")
        agreement = d.get("agreement") or []
        if agreement:
            sec.tables.append(
                Table(
                    f"{label}: judge agrees with the human vote",
                    ["votes", "agreement (%)", "95% CI", "votes compared"],
                    [
                        [
                            Cell("with ties" if a.get("with_ties") else "ties dropped"),
                            num(_f(a.get("value")) * 100),
                            ci(_f(a.get("ci_low")) * 100, _f(a.get("ci_high")) * 100),
                            Cell(str(a.get("n", "")), cls="num"),
                        ]
                        for a in agreement
                    ],
                )
            )
    if rows:
        sec.tables.insert(0, Table("Correlation of judge scores with mean human ratings", header, rows))
    if votes:
        vrows = []
        for with_ties in (True, False):
            a = pairwise_agreement([j for j, _ in votes], [h for _, h in votes], with_ties=with_ties, n_resamples=n_resamples, seed=seed)
            vrows.append([Cell("with ties" if with_ties else "ties dropped"), num(a.value * 100), ci(a.ci_low * 100, a.ci_high * 100), Cell(str(a.n), cls="num")])
        sec.tables.append(Table("Pairwise agreement of judge and human votes on the same battles (%)", ["votes", "agreement", "95% CI", "battles"], vrows))
    return sec


def _f(v: Any) -> float:
    """A number from JSON, where NaN was written as null."""
    return float(v) if isinstance(v, (int, float)) else math.nan


# ---- contamination ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ContaminationCheck:
    """One contamination result: its kind ("split gap", "memorisation", "n-gram overlap"), what it
    compared, the numbers as (name, text) pairs, and whether it raised a flag."""

    kind: str
    label: str
    figures: tuple[tuple[str, str], ...]
    flagged: bool
    reason: str


def contamination_section(checks: Sequence[ContaminationCheck], gaps: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> Section:
    """`gaps`: (label, split gap as a dict with gap, ci_low, ci_high) pairs to chart with their CIs."""
    sec = Section(
        "contamination",
        "Contamination flags",
        "Signs that test items leaked into training: a public split scored higher than a private one beyond "
        "its CI, items continued verbatim from their first half, benchmark text found in a corpus.",
    )
    if not checks:
        sec.missing = (
            "no contamination checks given; pass `--gap PUBLIC_RUN:PRIVATE_RUN` (also original vs GSM-Symbolic "
            "variants from `capeval contamination perturb`), or `--contamination FILE.json` written by "
            "`capeval contamination gap|ngram|memorisation --json FILE.json`"
        )
        return sec
    sec.tables.append(
        Table(
            "Checks",
            ["check", "compared", "result", "flag"],
            [
                [
                    Cell(c.kind),
                    Cell(c.label),
                    Cell("; ".join(f"{k} {v}" for k, v in c.figures)),
                    Cell(("FLAGGED: " if c.flagged else "ok: ") + c.reason, cls="warn" if c.flagged else ""),
                ]
                for c in checks
            ],
        )
    )
    if gaps:
        rows = []
        for label, g in gaps:
            # 0-1 metrics are charted in points like every other number in the report
            k = 100.0 if max(abs(g["mean_public"]), abs(g["mean_private"])) <= 1 else 1.0
            rows.append(svg.Interval(label, g["gap"] * k, g["ci_low"] * k, g["ci_high"] * k))
        lim = max([abs(v) for r in rows for v in (r.low, r.high, r.value) if math.isfinite(v)] + [1.0]) * 1.1
        sec.charts.append(Markup(svg.interval_chart(rows, "Public minus private score (points) with 95% CI", domain=(-lim, lim))))
    return sec


def rating_pairs(runs: Sequence[RunRecord], human: Sequence[Any]) -> list[RatingPair]:
    """Pair each judged sample's primary score with the mean of the human ratings of that response.

    Human ratings come from the store's human_ratings rows (the web app) keyed by run, task and
    sample, and from a sample's own metadata "human_rating" (a number or a list of numbers, as a
    meta-evaluation task that rates already-rated responses stores them)."""
    by_key: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for h in human:
        if h.run_id and h.task and h.sample_id:
            by_key[(h.run_id, h.task, h.sample_id)].append(h.rating)
    out: list[RatingPair] = []
    for r in runs:
        for t in r.result.tasks:
            metric = r.primary.get(t)
            if metric is None:
                continue
            for s in r.samples.get(t, ()):
                if metric not in s.scores:
                    continue
                ratings = list(by_key.get((r.run_id, t, s.sample_id), ()))
                own = s.metadata.get("human_rating")
                if isinstance(own, (int, float)):
                    ratings.append(float(own))
                elif isinstance(own, list):
                    ratings.extend(float(v) for v in own if isinstance(v, (int, float)))
                if ratings:
                    cap = s.capabilities[0] if s.capabilities else t
                    out.append(RatingPair(float(s.scores[metric]), sum(ratings) / len(ratings), cap, s.anchor))
    return out


def paired_votes(votes: Sequence[Any]) -> list[tuple[str, str]]:
    """(judge winner, human winner) per battle both judged: same prompt and same two models.

    Winners are named by model ("tie" for either kind of tie), so a battle shown to the judge
    with the models swapped still pairs up; where several votes exist, the first of each is used."""
    first: dict[tuple[str, str, frozenset[str]], str] = {}
    for v in votes:
        if not v.prompt_id or v.source not in ("judge", "human"):
            continue
        key = (v.source, v.prompt_id, frozenset((v.model_a, v.model_b)))
        winner = v.model_a if v.winner == "model_a" else v.model_b if v.winner == "model_b" else "tie"
        first.setdefault(key, winner)
    out = []
    for (source, prompt, models), judge_winner in first.items():
        if source == "judge" and ("human", prompt, models) in first:
            out.append((_relative(judge_winner, models), _relative(first[("human", prompt, models)], models)))
    return out


def _relative(winner: str, models: frozenset[str]) -> str:
    """"A"/"B"/"tie" against a fixed (sorted) order of the two models."""
    if winner == "tie":
        return "tie"
    return "A" if winner == min(models) else "B"
