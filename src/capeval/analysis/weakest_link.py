"""The Law of the Weakest Link (CrossEval): where a cross capability's score falls between its two parts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from capeval.crosseval.taxonomy import CROSS_CAPABILITIES, INDIVIDUAL_CAPABILITIES
from capeval.errors import CapevalError

# CrossEval's capabilities: 7 individual, 7 cross ("A & B")
CROSSEVAL_INDIVIDUAL = INDIVIDUAL_CAPABILITIES
CROSSEVAL_CROSS = CROSS_CAPABILITIES
# The paper calls one part stronger only when the two differ by more than 3 points (1-100 scale).
DEFAULT_THRESHOLD = 3.0

Category = Literal["below_both", "closer_to_weaker", "closer_to_stronger", "above_both"]
CATEGORIES: tuple[Category, ...] = ("below_both", "closer_to_weaker", "closer_to_stronger", "above_both")
CATEGORY_LABELS = {
    "below_both": "below both",
    "closer_to_weaker": "between, closer to weaker",
    "closer_to_stronger": "between, closer to stronger",
    "above_both": "above both",
}


class WeakestLinkError(CapevalError):
    """A capability table the weakest-link analysis cannot use."""


@dataclass(frozen=True)
class WeakestLinkCase:
    """One (model, cross capability) whose two individual capabilities differ by > threshold.

    `position` = (cross - weaker) / (stronger - weaker): 0 at the weaker score, 1 at the
    stronger, < 0 below both, > 1 above both; the x axis of the density plot."""

    model: str
    cross: str
    weaker: str
    stronger: str
    weaker_score: float
    stronger_score: float
    cross_score: float
    category: Category
    position: float


@dataclass(frozen=True)
class ModelAverages:
    """A model's mean individual-capability score vs its mean cross-capability score."""

    model: str
    mean_individual: float
    mean_cross: float
    n_individual: int
    n_cross: int


@dataclass(frozen=True)
class WeakestLinkResult:
    cases: tuple[WeakestLinkCase, ...]
    counts: Mapping[str, int]  # category -> number of cases
    per_model: Mapping[str, Mapping[str, int]]  # model -> category -> number of cases
    averages: tuple[ModelAverages, ...]
    mean_individual: float  # over every (model, individual capability) score
    mean_cross: float  # over every (model, cross capability) score
    threshold: float
    n_within_threshold: int  # pairs whose parts differ by <= threshold: no weaker/stronger
    missing: tuple[str, ...] = field(default=())  # "model: cross (missing part X)"

    @property
    def n_cases(self) -> int:
        return len(self.cases)

    @property
    def positions(self) -> list[float]:
        return [c.position for c in self.cases]


def cross_parts(capability: str) -> tuple[str, str] | None:
    """("Coding", "Reasoning") for "Coding & Reasoning"; None for an individual capability."""
    if "&" not in capability:
        return None
    parts = [p.strip() for p in capability.split("&")]
    if len(parts) != 2 or not all(parts):
        raise WeakestLinkError(
            f"cross capability '{capability}' does not name exactly two capabilities",
            "name cross capabilities 'A & B'",
        )
    return parts[0], parts[1]


def classify(cross: float, weaker: float, stronger: float) -> Category:
    """Where the cross score falls: below the weaker, above the stronger, or between them,
    nearer the weaker when strictly below the midpoint (the midpoint itself counts as nearer
    the stronger, so ties never inflate the weakest-link count)."""
    if cross < weaker:
        return "below_both"
    if cross > stronger:
        return "above_both"
    return "closer_to_weaker" if cross < (weaker + stronger) / 2 else "closer_to_stronger"


def weakest_link(
    scores: Mapping[str, Mapping[str, float]],
    threshold: float = DEFAULT_THRESHOLD,
    cross_capabilities: Sequence[str] | None = None,
) -> WeakestLinkResult:
    """Classify every (model, cross capability) against its two individual capabilities.

    Args:
        scores: model -> capability -> score on CrossEval's 1-100 scale.
        threshold: the individual scores must differ by more than this to name a weaker one.
        cross_capabilities: which cross capabilities to analyse; default every capability in
            the table whose name contains "&".
    """
    if not scores:
        raise WeakestLinkError("no capability scores", "pass a table of model, capability, score")
    cases: list[WeakestLinkCase] = []
    missing: list[str] = []
    within = 0
    for model, caps in scores.items():
        crosses = cross_capabilities if cross_capabilities is not None else [c for c in caps if "&" in c]
        for cross in crosses:
            parts = cross_parts(cross)
            if parts is None:
                raise WeakestLinkError(f"'{cross}' is not a cross capability", "cross names contain '&'")
            if cross not in caps:
                missing.append(f"{model}: {cross} (no score)")
                continue
            absent = [p for p in parts if p not in caps]
            if absent:
                missing.append(f"{model}: {cross} (missing part {', '.join(absent)})")
                continue
            a, b = float(caps[parts[0]]), float(caps[parts[1]])
            if abs(a - b) <= threshold:
                within += 1
                continue
            (weaker, ws), (stronger, ss) = sorted([(parts[0], a), (parts[1], b)], key=lambda t: t[1])
            c = float(caps[cross])
            cases.append(
                WeakestLinkCase(model, cross, weaker, stronger, ws, ss, c, classify(c, ws, ss), (c - ws) / (ss - ws))
            )
    per_model: dict[str, dict[str, int]] = {}
    for m in scores:
        cnt = Counter(c.category for c in cases if c.model == m)
        per_model[m] = {k: cnt.get(k, 0) for k in CATEGORIES}
    total = Counter(c.category for c in cases)
    averages = tuple(_averages(m, caps) for m, caps in scores.items())
    all_ind = [float(v) for caps in scores.values() for k, v in caps.items() if "&" not in k]
    all_cross = [float(v) for caps in scores.values() for k, v in caps.items() if "&" in k]
    return WeakestLinkResult(
        cases=tuple(cases),
        counts={k: total.get(k, 0) for k in CATEGORIES},
        per_model=per_model,
        averages=averages,
        mean_individual=_mean(all_ind),
        mean_cross=_mean(all_cross),
        threshold=threshold,
        n_within_threshold=within,
        missing=tuple(missing),
    )


def scores_from_rows(rows: Iterable[Mapping[str, object]]) -> dict[str, dict[str, float]]:
    """model -> capability -> score from rows with keys model, capability, score."""
    out: dict[str, dict[str, float]] = {}
    for i, r in enumerate(rows):
        try:
            out.setdefault(str(r["model"]), {})[str(r["capability"])] = float(r["score"])  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as e:
            raise WeakestLinkError(
                f"row {i + 1}: {type(e).__name__}: {e}", "each row needs model, capability and a numeric score"
            ) from None
    return out


def _averages(model: str, caps: Mapping[str, float]) -> ModelAverages:
    ind = [float(v) for k, v in caps.items() if "&" not in k]
    cross = [float(v) for k, v in caps.items() if "&" in k]
    return ModelAverages(model, _mean(ind), _mean(cross), len(ind), len(cross))


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")
