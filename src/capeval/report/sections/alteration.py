"""Section on capability alteration studies (`capeval alter`): the change of every capability and
whether each cross capability involving the altered one follows its weaker part."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup

from capeval.report import svg
from capeval.report.data import RunRecord
from capeval.report.sections.base import Cell, Section, Table, ci, num
from capeval.report.sections.capabilities import capability_items


def signed(v: float | None) -> Cell:
    """A change in points with its sign (+49.5, -3.0); "–" when there is none."""
    return Cell("–" if v is None or not math.isfinite(v) else f"{v:+.1f}", cls="num")


def _study(run: RunRecord) -> Mapping[str, Any]:
    alter = run.result.config.get("alter")
    return alter if isinstance(alter, Mapping) else {}


def study_pairs(runs: Sequence[RunRecord]) -> list[tuple[RunRecord, RunRecord]]:
    """(baseline, altered) runs of the same study: same model, capability and development split."""
    pairs = []
    for altered in runs:
        a = _study(altered)
        if a.get("condition") != "altered":
            continue
        for base in runs:
            b = _study(base)
            if (
                b.get("condition") == "baseline"
                and base.model == altered.model
                and b.get("capability") == a.get("capability")
                and b.get("dev_ids") == a.get("dev_ids")
            ):
                pairs.append((base, altered))
                break
    return pairs


def alteration_section(runs: Sequence[RunRecord], seed: int = 0) -> Section:
    from capeval.analysis.alteration import VERDICT_LABELS, alteration_effect

    sec = Section(
        "alteration",
        "Capability alteration",
        "A principle-based system prompt built for one capability (`capeval alter`): how every capability "
        "changed, paired over the same prompts, and whether each cross capability involving the altered one "
        "moved the same way as its weaker part (CrossEval's authors: 90% of cases).",
    )
    pairs = study_pairs(runs)
    if not pairs:
        sec.missing = "needs the baseline and altered runs of a study: `capeval alter --model M --capability C --judge J`, then pass both runs"
        return sec
    for base, altered in pairs:
        cap = str(_study(altered).get("capability"))
        effect = alteration_effect(capability_items(runs, base), capability_items(runs, altered), cap, seed=seed)
        label = f"{altered.model}, altering {cap}"
        changes = sorted(effect.changes.values(), key=lambda c: ("&" in c.capability, c.capability != cap, c.capability))
        rows = [svg.Interval(c.capability, c.diff, c.ci_low, c.ci_high) for c in changes]
        sec.charts.append(Markup(svg.interval_chart(rows, f"{label}: change per capability (points, 95% CI)", unit="")))
        sec.tables.append(Table(
            f"{label}: scores without ({base.run_id}) and with ({altered.run_id}) the principles",
            ["capability", "n", "without", "with", "change", "95% CI", "p"],
            [[Cell(c.capability, cls="total" if c.capability == cap else ""), Cell(str(c.n), cls="num"), num(c.before), num(c.after),
              signed(c.diff), ci(c.ci_low, c.ci_high), Cell(f"{c.p_value:.3g}", cls="num")] for c in changes],
        ))
        sec.tables.append(Table(
            f"{label}: cross capabilities ({effect.n_follows} of {len(effect.decided)} decided follow their weaker part)",
            ["cross capability", "weaker (before)", f"{cap} is", "change weaker", "change stronger", "change cross", "verdict"],
            [[Cell(x.cross), Cell(x.weaker or "–"), Cell(x.altered_role or "–"), signed(x.change_weaker), signed(x.change_stronger),
              signed(x.change_cross), Cell(VERDICT_LABELS[x.verdict] + (f" ({x.note})" if x.note else ""),
                                        cls="warn" if x.verdict == "does_not_follow" else "")] for x in effect.crosses],
        ))
    return sec
