"""Inter-annotator agreement on 1-5 ratings: Cohen's kappa for two raters, Krippendorff's alpha for many."""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

KappaWeights = Literal["linear", "quadratic"] | None
AlphaLevel = Literal["nominal", "ordinal", "interval"]
RATING_SCALE = (1.0, 2.0, 3.0, 4.0, 5.0)


def cohen_kappa(
    a: Sequence[float], b: Sequence[float], categories: Sequence[float] | None = None, weights: KappaWeights = None
) -> float:
    """Cohen's kappa of two raters' labels of the same items (a[i] and b[i] rate item i).

    Args:
        a: the first rater's labels.
        b: the second rater's labels, in the same item order.
        categories: the label set in its order (default: the labels seen, sorted); weights count
            distance in positions of this list, as sklearn's `cohen_kappa_score(labels=...)` does.
        weights: None (unweighted: any disagreement costs 1), "linear" (|i - j|) or "quadratic"
            ((i - j)^2, Fleiss & Cohen's weighting, the usual one for ordinal scales).

    Returns NaN where kappa is undefined: no items, or chance agreement 1 (both raters always gave
    the same single label)."""
    if len(a) != len(b):
        raise ValueError(f"two raters need the same items: {len(a)} labels against {len(b)}")
    if not a:
        return math.nan
    cats = list(categories) if categories is not None else sorted(set(a) | set(b))
    index = {c: i for i, c in enumerate(cats)}
    unknown = [x for x in (*a, *b) if x not in index]
    if unknown:
        raise ValueError(f"label {unknown[0]!r} is not one of the categories {cats}")
    k = len(cats)
    observed = np.zeros((k, k))
    for x, y in zip(a, b):
        observed[index[x], index[y]] += 1
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    i, j = np.indices((k, k))
    if weights is None:
        w = (i != j).astype(float)
    elif weights == "linear":
        w = np.abs(i - j).astype(float)
    elif weights == "quadratic":
        w = ((i - j) ** 2).astype(float)
    else:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', not {weights!r}")
    chance = float((w * expected).sum())
    if chance == 0:
        return math.nan
    return 1.0 - float((w * observed).sum()) / chance


def krippendorff_alpha(units: Iterable[Sequence[float]], level: AlphaLevel = "ordinal") -> float:
    """Krippendorff's alpha over units (items), each the values its raters gave (any number of raters,
    missing ratings simply absent); units with fewer than two values are not pairable and are left out.

    Computed from the coincidence matrix (Krippendorff 2011, "Computing Krippendorff's alpha-reliability"):
    alpha = 1 - D_o / D_e with the level's squared difference: nominal (0 or 1), interval ((c - k)^2)
    or ordinal ((sum of n_g for g from c to k, minus (n_c + n_k) / 2)^2, ranks from the values' own
    frequencies). Returns NaN where no unit has two values or every value is the same (D_e = 0)."""
    pairable = [list(u) for u in units if len(u) >= 2]
    values = sorted({v for u in pairable for v in u})
    if not pairable or len(values) < 2:
        return math.nan
    index = {v: i for i, v in enumerate(values)}
    k = len(values)
    coincidence = np.zeros((k, k))
    for u in pairable:
        m = len(u)
        for x, y in itertools.permutations(u, 2):
            coincidence[index[x], index[y]] += 1.0 / (m - 1)
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    v = np.asarray(values, dtype=float)
    if level == "nominal":
        delta = (v[:, None] != v[None, :]).astype(float)
    elif level == "interval":
        delta = (v[:, None] - v[None, :]) ** 2
    elif level == "ordinal":
        cum = np.cumsum(n_c)
        i, j = np.indices((k, k))
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        between = cum[hi] - np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
        delta = (between - (n_c[i] + n_c[j]) / 2) ** 2
    else:
        raise ValueError(f"level must be 'nominal', 'ordinal' or 'interval', not {level!r}")
    disagreement_observed = float((coincidence * delta).sum())
    disagreement_expected = float((np.outer(n_c, n_c) * delta).sum()) / (n - 1)
    if disagreement_expected == 0:
        return math.nan
    return 1.0 - disagreement_observed / disagreement_expected


def annotator_labels(annotators: Iterable[tuple[str, str | None]]) -> dict[str, str]:
    """(annotator id, name) -> the label agreement tables show: the name, or the id's start where there
    is none; a name two ids share gets the id's start too, so two people are never merged into one rater."""
    names: dict[str, str] = {}
    for annotator_id, name in annotators:
        names.setdefault(annotator_id, name or annotator_id[:8])
    counts: dict[str, int] = {}
    for name in names.values():
        counts[name] = counts.get(name, 0) + 1
    return {aid: (f"{name} ({aid[:6]})" if counts[name] > 1 else name) for aid, name in names.items()}


@dataclass(frozen=True)
class PairAgreement:
    """Cohen's kappa of two annotators over the items both rated."""

    annotator_a: str
    annotator_b: str
    n_items: int
    kappa: float  # unweighted
    kappa_quadratic: float  # quadratic weights over the 1-5 scale


@dataclass(frozen=True)
class RatingAgreement:
    """Agreement on the items rated by more than one annotator."""

    n_items: int  # items with at least two annotators' ratings
    n_ratings: int  # ratings of those items
    n_annotators: int  # annotators who rated at least one of them
    alpha_ordinal: float
    alpha_interval: float
    pairs: tuple[PairAgreement, ...]  # every pair of annotators with at least one item in common


def rating_agreement(
    ratings: Iterable[tuple[Hashable, str, float]], categories: Sequence[float] = RATING_SCALE
) -> RatingAgreement:
    """Agreement from (item, annotator, rating) rows; where one annotator rated an item more than
    once, their last rating counts. Only items rated by at least two annotators take part."""
    by_item: dict[Hashable, dict[str, float]] = {}
    for item, annotator, rating in ratings:
        by_item.setdefault(item, {})[annotator] = float(rating)
    shared: Mapping[Hashable, dict[str, float]] = {i: r for i, r in by_item.items() if len(r) >= 2}
    annotators = sorted({a for r in shared.values() for a in r})
    pairs = []
    for x, y in itertools.combinations(annotators, 2):
        both = [(r[x], r[y]) for r in shared.values() if x in r and y in r]
        if both:
            a, b = [p[0] for p in both], [p[1] for p in both]
            pairs.append(PairAgreement(
                x, y, len(both), cohen_kappa(a, b, categories), cohen_kappa(a, b, categories, weights="quadratic")
            ))
    units = [list(r.values()) for r in shared.values()]
    return RatingAgreement(
        n_items=len(shared),
        n_ratings=sum(len(u) for u in units),
        n_annotators=len(annotators),
        alpha_ordinal=krippendorff_alpha(units, "ordinal"),
        alpha_interval=krippendorff_alpha(units, "interval"),
        pairs=tuple(pairs),
    )
