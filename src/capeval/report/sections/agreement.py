"""Section on people: how far annotators agree on the 1-5 ratings they gave the same responses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from capeval.report.data import RunRecord
from capeval.report.sections.base import Cell, Section, Table, num


def agreement_section(runs: Sequence[RunRecord], ratings: Sequence[Any]) -> Section:
    """`ratings`: capeval.report.data.HumanRating rows; those of the reported runs with a known annotator count."""
    from capeval.analysis.agreement import RATING_SCALE, annotator_labels, rating_agreement

    sec = Section(
        "annotator-agreement",
        "Agreement between annotators",
        "How far people agree on the 1-5 ratings they gave the same responses, over the responses of these runs "
        "rated by more than one annotator. Krippendorff's alpha over everyone, at the ordinal level (the scale's "
        "level: only the order of ratings counts) and the interval level (distances count); Cohen's kappa for each "
        "pair, unweighted and with quadratic weights over the 1-5 scale. 1 is perfect agreement, 0 what chance gives.",
    )
    run_ids = {r.run_id for r in runs}
    mine = [h for h in ratings if h.run_id in run_ids and h.annotator_id]
    labels = annotator_labels((h.annotator_id, h.annotator) for h in mine)
    values = {h.rating for h in mine}
    # ratings imported from elsewhere may lie off the app's 1-5 scale: then kappa's categories are the values seen
    scale = RATING_SCALE if values <= set(RATING_SCALE) else tuple(sorted(values))
    agreement = rating_agreement((((h.run_id, h.task, h.sample_id), labels[h.annotator_id], h.rating) for h in mine), scale)
    if agreement.n_items == 0:
        sec.missing = (
            f"no response of these runs was rated by more than one annotator ({len(mine)} ratings by {len(labels)} "
            "annotator(s)); people rate in `capeval annotate`, which serves the least-rated responses first"
        )
        return sec
    counts = f"{agreement.n_items} responses, {agreement.n_ratings} ratings, {agreement.n_annotators} annotators"
    sec.tables.append(
        Table(
            "Krippendorff's alpha",
            ["level", "alpha", "responses", "ratings", "annotators"],
            [
                [Cell(level), num(value, 3), Cell(str(agreement.n_items), cls="num"), Cell(str(agreement.n_ratings), cls="num"),
                 Cell(str(agreement.n_annotators), cls="num")]
                for level, value in (("ordinal", agreement.alpha_ordinal), ("interval", agreement.alpha_interval))
            ],
        )
    )
    sec.tables.append(
        Table(
            "Cohen's kappa per pair of annotators",
            ["annotator", "annotator", "responses both rated", "kappa (unweighted)", "kappa (quadratic weights)"],
            [
                [Cell(p.annotator_a), Cell(p.annotator_b), Cell(str(p.n_items), cls="num"), num(p.kappa, 3), num(p.kappa_quadratic, 3)]
                for p in agreement.pairs
            ],
        )
    )
    sec.notes.append(f"from {counts}; kappa is undefined (–) for a pair who gave one and the same rating throughout")
    return sec
