"""Arena leaderboard from pairwise battles: Bradley-Terry MLE and online Elo, as Chatbot Arena computes them."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from capeval.errors import CapevalError

WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")
# Chatbot Arena's (lm-sys/FastChat elo_analysis.py) rating scale.
SCALE = 400.0
BASE = 10.0
INIT_RATING = 1000.0
ELO_K = 4.0


class ArenaError(CapevalError):
    """Battles the arena analysis cannot use."""


@dataclass(frozen=True)
class Battle:
    model_a: str
    model_b: str
    winner: str  # one of WINNERS


def battles_from_rows(rows: Iterable[Mapping[str, object]]) -> list[Battle]:
    """Battles from rows with model_a, model_b, winner (model_a / model_b / tie / tie (bothbad))."""
    out: list[Battle] = []
    for i, r in enumerate(rows):
        try:
            a, b, w = str(r["model_a"]).strip(), str(r["model_b"]).strip(), str(r["winner"]).strip()
        except KeyError as e:
            raise ArenaError(f"battle {i + 1} has no {e} column", "battles need model_a, model_b, winner") from None
        if w not in WINNERS:
            raise ArenaError(f"battle {i + 1}: winner '{w}' is not one of {', '.join(WINNERS)}")
        if a == b:
            raise ArenaError(f"battle {i + 1}: a model against itself ({a})", "drop self-battles")
        out.append(Battle(a, b, w))
    return out


def _outcome(winner: str) -> float:
    # a tie is half a win for each side; this is the same likelihood as FastChat's duplicated rows
    return 1.0 if winner == "model_a" else 0.0 if winner == "model_b" else 0.5


def _models(battles: Sequence[Battle]) -> list[str]:
    seen: dict[str, None] = {}
    for b in battles:
        seen.setdefault(b.model_a)
        seen.setdefault(b.model_b)
    return list(seen)


def _matchups(battles: Sequence[Battle], models: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique (model_a index, model_b index, outcome) rows and how often each occurred."""
    idx = {m: i for i, m in enumerate(models)}
    counts = Counter((idx[b.model_a], idx[b.model_b], _outcome(b.winner)) for b in battles)
    keys = list(counts)
    pairs = np.array([(a, b) for a, b, _ in keys], dtype=np.int64).reshape(-1, 2)
    outcomes = np.array([o for _, _, o in keys], dtype=float)
    weights = np.array([counts[k] for k in keys], dtype=float)
    return pairs, outcomes, weights


def _fit_bt(
    pairs: np.ndarray, outcomes: np.ndarray, weights: np.ndarray, n_models: int, base: float, x0: np.ndarray | None = None
) -> np.ndarray:
    """Unregularised Bradley-Terry MLE in natural units: P(a beats b) = sigmoid(ln(base) (r_a - r_b))."""
    # imported here: every CLI start imports this module (command registration), few runs fit
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    alpha = math.log(base)
    total = weights.sum()

    def loss_grad(r: np.ndarray) -> tuple[float, np.ndarray]:
        z = alpha * (r[pairs[:, 0]] - r[pairs[:, 1]])
        # mean loss keeps the scale (and the gradient tolerance) independent of the battle count
        loss = -np.sum(weights * (outcomes * log_expit(z) + (1 - outcomes) * log_expit(-z))) / total
        g = -alpha * weights * (outcomes - expit(z)) / total
        grad = np.zeros(n_models)
        np.add.at(grad, pairs[:, 0], g)
        np.add.at(grad, pairs[:, 1], -g)
        return float(loss), grad

    start = np.zeros(n_models) if x0 is None else x0
    res = minimize(loss_grad, start, jac=True, method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-14})
    return np.asarray(res.x)


def _to_scale(
    r: np.ndarray, models: Sequence[str], present: np.ndarray, scale: float, init_rating: float, anchor: str | None, anchor_rating: float
) -> np.ndarray:
    # ratings are identified only up to a shift: fix the mean of the models that played at
    # init_rating (sklearn's and FastChat's fits land there too), then move the anchor if asked
    r = r - r[present].mean()
    out = scale * r + init_rating
    out[~present] = np.nan
    if anchor is not None:
        out = out + (anchor_rating - out[list(models).index(anchor)])
    return out


def bradley_terry(
    battles: Sequence[Battle],
    scale: float = SCALE,
    base: float = BASE,
    init_rating: float = INIT_RATING,
    anchor: str | None = None,
    anchor_rating: float = INIT_RATING,
) -> dict[str, float]:
    """Bradley-Terry ratings by maximum likelihood, on Chatbot Arena's scale.

    The same model as FastChat's compute_mle_elo (logistic regression without intercept or
    penalty, each tie one win for each side): P(A beats B) = 1 / (1 + base^((R_B - R_A)/scale)).
    The mean rating is `init_rating`, unless `anchor` names a model placed at `anchor_rating`."""
    if not battles:
        raise ArenaError("no battles", "collect pairwise votes first (web app or `capeval judge --pairwise`)")
    models = _models(battles)
    if anchor is not None and anchor not in models:
        raise ArenaError(f"anchor model '{anchor}' has no battles", f"models: {', '.join(models)}")
    pairs, outcomes, weights = _matchups(battles, models)
    r = _fit_bt(pairs, outcomes, weights, len(models), base)
    scaled = _to_scale(r, models, np.ones(len(models), bool), scale, init_rating, anchor, anchor_rating)
    return dict(zip(models, scaled.tolist()))


def online_elo(
    battles: Sequence[Battle], k: float = ELO_K, scale: float = SCALE, base: float = BASE, init_rating: float = INIT_RATING
) -> dict[str, float]:
    """Sequential Elo in battle order (FastChat's compute_elo): order-dependent, for comparison."""
    rating: dict[str, float] = defaultdict(lambda: init_rating)
    for b in battles:
        ra, rb = rating[b.model_a], rating[b.model_b]
        ea = 1 / (1 + base ** ((rb - ra) / scale))
        sa = _outcome(b.winner)
        rating[b.model_a] += k * (sa - ea)
        rating[b.model_b] += k * ((1 - sa) - (1 - ea))
    return dict(rating)


def bootstrap_bradley_terry(
    battles: Sequence[Battle],
    n_resamples: int = 1000,
    seed: int = 0,
    scale: float = SCALE,
    base: float = BASE,
    init_rating: float = INIT_RATING,
    anchor: str | None = None,
    anchor_rating: float = INIT_RATING,
) -> tuple[list[str], np.ndarray]:
    """(models, ratings[n_resamples, n_models]) refitted on battles resampled with replacement.

    Resampling battles equals drawing the counts of each distinct (a, b, outcome) from a
    multinomial, which is how FastChat does it and keeps each refit small. A model that drew
    no battle in a resample gets NaN there."""
    models = _models(battles)
    pairs, outcomes, weights = _matchups(battles, models)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(battles), weights / weights.sum(), size=n_resamples).astype(float)
    # the likelihood is convex, so starting each refit at the full-data optimum only saves iterations
    full = _fit_bt(pairs, outcomes, weights, len(models), base)
    out = np.empty((n_resamples, len(models)))
    for i, w in enumerate(draws):
        played = np.zeros(len(models))
        np.add.at(played, pairs[:, 0], w)
        np.add.at(played, pairs[:, 1], w)
        present = played > 0
        keep = w > 0
        r = _fit_bt(pairs[keep], outcomes[keep], w[keep], len(models), base, x0=full)
        if anchor is not None and not present[models.index(anchor)]:
            out[i] = np.nan  # no anchor, no common scale: the resample cannot be placed
            continue
        out[i] = _to_scale(r, models, present, scale, init_rating, anchor, anchor_rating)
    return models, out


@dataclass(frozen=True)
class ArenaRating:
    model: str
    rating: float  # Bradley-Terry MLE on all battles
    ci_low: float  # 2.5% bootstrap quantile
    ci_high: float  # 97.5% bootstrap quantile
    elo: float  # online Elo, K=4
    n_battles: int
    wins: int
    losses: int
    ties: int
    rank: int  # 1 + number of models whose CI lies entirely above this one's (Chatbot Arena's rank)


@dataclass(frozen=True)
class WinRateMatrix:
    """win_rate[i][j]: fraction of non-tied battles between models[i] and models[j] that i won
    (None when they never met without a tie)."""

    models: tuple[str, ...]
    win_rate: tuple[tuple[float | None, ...], ...]
    battles: tuple[tuple[int, ...], ...]  # all battles, ties included


@dataclass(frozen=True)
class Leaderboard:
    ratings: tuple[ArenaRating, ...]  # best first
    win_rates: WinRateMatrix
    unstable_pairs: tuple[tuple[str, str], ...]  # adjacent in the ranking with overlapping CIs
    n_battles: int
    n_bootstrap: int
    seed: int
    anchor: str | None
    anchor_rating: float
    warnings: tuple[str, ...] = ()

    @property
    def stable(self) -> bool:
        return not self.unstable_pairs


def win_rate_matrix(battles: Sequence[Battle], order: Sequence[str] | None = None) -> WinRateMatrix:
    """Pairwise win fractions over non-tied battles (as Chatbot Arena's heatmap) and battle counts."""
    models = list(order) if order is not None else _models(battles)
    idx = {m: i for i, m in enumerate(models)}
    n = len(models)
    wins = np.zeros((n, n))
    decided = np.zeros((n, n))
    count = np.zeros((n, n), dtype=int)
    for b in battles:
        i, j = idx[b.model_a], idx[b.model_b]
        count[i, j] += 1
        count[j, i] += 1
        if b.winner == "model_a":
            wins[i, j] += 1
        elif b.winner == "model_b":
            wins[j, i] += 1
        else:
            continue
        decided[i, j] += 1
        decided[j, i] += 1
    rates = tuple(
        tuple(float(wins[i, j] / decided[i, j]) if decided[i, j] else None for j in range(n)) for i in range(n)
    )
    return WinRateMatrix(tuple(models), rates, tuple(tuple(int(c) for c in row) for row in count))


def arena_leaderboard(
    battles: Sequence[Battle],
    n_bootstrap: int = 1000,
    seed: int = 0,
    anchor: str | None = None,
    anchor_rating: float = INIT_RATING,
) -> Leaderboard:
    """Bradley-Terry ratings with bootstrap 95% CIs, online Elo, records, win rates, stability."""
    ratings = bradley_terry(battles, anchor=anchor, anchor_rating=anchor_rating)
    elo = online_elo(battles)
    models, boot = bootstrap_bradley_terry(battles, n_bootstrap, seed, anchor=anchor, anchor_rating=anchor_rating)
    lo = dict(zip(models, np.nanquantile(boot, 0.025, axis=0).tolist()))
    hi = dict(zip(models, np.nanquantile(boot, 0.975, axis=0).tolist()))
    record: dict[str, Counter[str]] = {m: Counter() for m in models}
    for b in battles:
        if b.winner == "model_a":
            record[b.model_a]["wins"] += 1
            record[b.model_b]["losses"] += 1
        elif b.winner == "model_b":
            record[b.model_b]["wins"] += 1
            record[b.model_a]["losses"] += 1
        else:
            record[b.model_a]["ties"] += 1
            record[b.model_b]["ties"] += 1
    order = sorted(models, key=lambda m: -ratings[m])
    rows = []
    for m in order:
        rec = record[m]
        rows.append(
            ArenaRating(
                model=m,
                rating=ratings[m],
                ci_low=lo[m],
                ci_high=hi[m],
                elo=elo[m],
                n_battles=rec["wins"] + rec["losses"] + rec["ties"],
                wins=rec["wins"],
                losses=rec["losses"],
                ties=rec["ties"],
                rank=1 + sum(1 for o in models if o != m and lo[o] > hi[m]),
            )
        )
    warnings = tuple(
        f"{r.model} {'won' if r.wins else 'lost'} every battle: its maximum-likelihood rating is unbounded "
        "and the number shown is where the optimiser stopped"
        for r in rows
        if r.n_battles and (r.wins == r.n_battles or r.losses == r.n_battles)
    )
    unstable = tuple(
        (a.model, b.model) for a, b in itertools.pairwise(rows) if a.ci_low <= b.ci_high
    )
    return Leaderboard(
        ratings=tuple(rows),
        win_rates=win_rate_matrix(battles, order),
        unstable_pairs=unstable,
        n_battles=len(battles),
        n_bootstrap=n_bootstrap,
        seed=seed,
        anchor=anchor,
        anchor_rating=anchor_rating,
        warnings=warnings,
    )
