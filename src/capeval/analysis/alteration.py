"""Capability alteration (CrossEval's case study): does a cross score follow its weaker part?

Input: per-item scores (1-100) per capability, once without and once with a change meant to alter one
capability C (a principle-based system prompt). For every capability the change is a paired
difference over the items scored both times, with a bootstrap CI and p-value. For every cross
capability "A & B" involving C, the weaker part is the one that scored lower without the change
(the parts must differ by more than `threshold` points, as in the weakest-link analysis). The cross
capability *follows* its weaker part when its change goes the same way as the weaker part's: both up,
both down, or both unchanged, where a change of at most `min_change` points counts as unchanged.
The authors report that altering the weaker capability moves the cross score in 90% of cases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from capeval.analysis.stats import compare_paired
from capeval.analysis.weakest_link import CROSSEVAL_CROSS, DEFAULT_THRESHOLD, cross_parts
from capeval.errors import CapevalError

# A change of at most this many points (1-100 scale) counts as no change.
DEFAULT_MIN_CHANGE = 1.0

Verdict = Literal["follows", "does_not_follow", "no_weaker", "missing"]
VERDICT_LABELS = {
    "follows": "follows the weaker part",
    "does_not_follow": "does not follow the weaker part",
    "no_weaker": "parts within threshold: no weaker part",
    "missing": "not scored both times",
}


class AlterationError(CapevalError):
    """Scores an alteration analysis cannot use."""


@dataclass(frozen=True)
class Change:
    """One capability's score without and with the alteration, over the items scored both times."""

    capability: str
    n: int
    before: float
    after: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n_only_before: int = 0
    n_only_after: int = 0


@dataclass(frozen=True)
class CrossFollow:
    """One cross capability involving the altered one.

    `altered_role` is "weaker", "stronger" or "tied" (the altered part's role before the change).
    `direction` is +1, -1 or 0 per change (0: within `min_change`). `moved_like` says which part's
    change the cross change is closer to ("weaker", "stronger" or "" when undecided)."""

    cross: str
    parts: tuple[str, str]
    altered: str
    verdict: Verdict
    weaker: str = ""
    stronger: str = ""
    altered_role: str = ""
    gap_before: float | None = None
    change_weaker: float | None = None
    change_stronger: float | None = None
    change_cross: float | None = None
    direction_weaker: int = 0
    direction_cross: int = 0
    moved_like: str = ""
    note: str = ""


@dataclass
class AlterationEffect:
    capability: str
    threshold: float
    min_change: float
    changes: dict[str, Change] = field(default_factory=dict)
    crosses: list[CrossFollow] = field(default_factory=list)

    @property
    def decided(self) -> list[CrossFollow]:
        return [c for c in self.crosses if c.verdict in ("follows", "does_not_follow")]

    @property
    def n_follows(self) -> int:
        return sum(1 for c in self.crosses if c.verdict == "follows")

    @property
    def follow_rate(self) -> float | None:
        return self.n_follows / len(self.decided) if self.decided else None


def direction(diff: float, min_change: float) -> int:
    return 0 if abs(diff) <= min_change else (1 if diff > 0 else -1)


def paired_change(
    capability: str, before: Mapping[str, float], after: Mapping[str, float], seed: int = 0, n_resamples: int = 10000
) -> Change | None:
    """The paired change of one capability (None when no item was scored both times)."""
    if not set(before) & set(after):
        return None
    c = compare_paired(after, before, test="bootstrap", n_resamples=n_resamples, seed=seed)
    return Change(
        capability, c.n, c.mean_b, c.mean_a, c.diff, c.ci_low, c.ci_high, c.p_value,
        n_only_before=c.n_only_b, n_only_after=c.n_only_a,
    )


def involving(capability: str, names: set[str]) -> list[str]:
    """Cross capabilities naming `capability` as a part: CrossEval's, then any other present."""
    found = [c for c in CROSSEVAL_CROSS if capability in (cross_parts(c) or ())]
    found += sorted(c for c in names if c not in found and capability in (cross_parts(c) or ()))
    return found


def alteration_effect(
    before: Mapping[str, Mapping[str, float]],
    after: Mapping[str, Mapping[str, float]],
    capability: str,
    threshold: float = DEFAULT_THRESHOLD,
    min_change: float = DEFAULT_MIN_CHANGE,
    seed: int = 0,
    n_resamples: int = 10000,
) -> AlterationEffect:
    """Changes per capability and the follow-the-weaker verdict per cross capability involving
    `capability`. `before`/`after`: capability -> item key -> score (1-100)."""
    if threshold < 0 or min_change < 0:
        raise AlterationError("threshold and min_change must be >= 0")
    if capability in set(before) | set(after) and cross_parts(capability):
        raise AlterationError(f"'{capability}' is a cross capability", "alter an individual capability; its cross capabilities are measured")
    res = AlterationEffect(capability, threshold, min_change)
    for cap in sorted(set(before) & set(after)):
        ch = paired_change(cap, before[cap], after[cap], seed=seed, n_resamples=n_resamples)
        if ch is not None:
            res.changes[cap] = ch
    if capability not in res.changes:
        present = ", ".join(sorted(c for c in res.changes if not cross_parts(c))) or "none"
        raise AlterationError(
            f"capability '{capability}' has no item scored both without and with the alteration",
            f"individual capabilities scored both times: {present}",
        )
    for cross in involving(capability, set(before) | set(after)):
        res.crosses.append(_follow(cross, capability, res.changes, threshold, min_change))
    return res


def _follow(cross: str, altered: str, changes: Mapping[str, Change], threshold: float, min_change: float) -> CrossFollow:
    a, b = cross_parts(cross) or ("", "")
    lacking = [c for c in (cross, a, b) if c not in changes]
    if lacking:
        return CrossFollow(cross, (a, b), altered, "missing", note=f"lacking: {', '.join(lacking)}")
    ca, cb, cx = changes[a], changes[b], changes[cross]
    gap = abs(ca.before - cb.before)
    if gap <= threshold:
        return CrossFollow(
            cross, (a, b), altered, "no_weaker", altered_role="tied", gap_before=gap, change_cross=cx.diff,
            note=f"{a} {ca.before:.1f} vs {b} {cb.before:.1f} differ by <= {threshold:g}",
        )
    weak, strong = (ca, cb) if ca.before < cb.before else (cb, ca)
    dw, dx = direction(weak.diff, min_change), direction(cx.diff, min_change)
    closer_w, closer_s = abs(cx.diff - weak.diff), abs(cx.diff - strong.diff)
    moved_like = "" if closer_w == closer_s else ("weaker" if closer_w < closer_s else "stronger")
    return CrossFollow(
        cross, (a, b), altered, "follows" if dw == dx else "does_not_follow",
        weaker=weak.capability, stronger=strong.capability,
        altered_role="weaker" if weak.capability == altered else "stronger",
        gap_before=gap, change_weaker=weak.diff, change_stronger=strong.diff, change_cross=cx.diff,
        direction_weaker=dw, direction_cross=dx, moved_like=moved_like,
    )
