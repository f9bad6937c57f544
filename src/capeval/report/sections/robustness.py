"""Sections on how much to trust a score: prompt sensitivity and contamination flags."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from capeval.report import svg
from capeval.report.data import RunRecord
from capeval.report.sections.base import (
    Cell,
    Section,
    Table,
    num,
    shown,
    task_scale,
)


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
            scale = task_scale(runs, row.task, row.metric)
            vals = [(f"v{v}", shown(x, scale)) for v, x in zip(row.variants, row.values)]
            spreads.append(svg.Spread(f"{model} · {row.task}", vals))
            table.rows.append(
                [
                    Cell(model),
                    Cell(row.task),
                    Cell(row.metric),
                    Cell("; ".join(f"{n}: {v:.1f}" for n, v in vals)),
                    num(shown(row.mean, scale)),
                    num(shown(row.std, scale)),
                    num(shown(row.spread, scale)),
                    num(shown(row.ci_half_width, scale)),
                    Cell(
                        ("spread > CI" if row.exceeds_ci else "within CI")
                        + ("; items differ between variants (failed calls)" if row.warning else ""),
                        cls="warn" if row.exceeds_ci or row.warning else "",
                    ),
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
