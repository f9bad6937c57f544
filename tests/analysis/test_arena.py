"""Arena: Bradley-Terry ratings agree with Chatbot Arena's published algorithm; Elo, CIs, win rates."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from capeval.analysis.arena import (
    ArenaError,
    Battle,
    arena_leaderboard,
    battles_from_rows,
    bradley_terry,
    online_elo,
    win_rate_matrix,
)

STRENGTHS = {"alpha": 1250, "bravo": 1150, "charlie": 1135, "delta": 1000, "echo": 950, "foxtrot": 850}


def synthetic_battles(n: int = 3000, seed: int = 7, strengths=STRENGTHS) -> list[dict]:
    """Battles between models of known strength: 15% tie, 5% tie (bothbad), else a BT draw."""
    rng = np.random.default_rng(seed)
    names = list(strengths)
    rows = []
    for _ in range(n):
        i, j = rng.choice(len(names), 2, replace=False)
        a, b = names[i], names[j]
        p_a = 1 / (1 + 10 ** ((strengths[b] - strengths[a]) / 400))
        u = rng.random()
        if u < 0.15:
            w = "tie"
        elif u < 0.20:
            w = "tie (bothbad)"
        else:
            w = "model_a" if rng.random() < p_a else "model_b"
        rows.append({"model_a": a, "model_b": b, "winner": w})
    return rows


def fastchat_compute_mle_elo(df: pd.DataFrame, SCALE=400, BASE=10, INIT_RATING=1000) -> pd.Series:
    """The reference: Chatbot Arena's compute_mle_elo (lm-sys/FastChat, elo_analysis notebook),
    re-written here: every battle twice, a tie one A-win and one B-win, unpenalised logistic
    regression without intercept. penalty=None is spelled C=inf in scikit-learn >= 1.8."""
    from sklearn.linear_model import LogisticRegression

    models = pd.concat([df["model_a"], df["model_b"]]).unique()
    models = pd.Series(np.arange(len(models)), index=models)
    df = pd.concat([df, df], ignore_index=True)
    p, n = len(models.index), df.shape[0]
    X = np.zeros([n, p])
    X[np.arange(n), models[df["model_a"]]] = +math.log(BASE)
    X[np.arange(n), models[df["model_b"]]] = -math.log(BASE)
    Y = np.zeros(n)
    Y[df["winner"] == "model_a"] = 1.0
    tie_idx = ((df["winner"] == "tie") | (df["winner"] == "tie (bothbad)")).to_numpy().copy()
    tie_idx[len(tie_idx) // 2 :] = False
    Y[tie_idx] = 1.0
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-6)
    lr.fit(X, Y)
    elo_scores = SCALE * lr.coef_[0] + INIT_RATING
    return pd.Series(elo_scores, index=models.index)


def fastchat_compute_elo(df: pd.DataFrame, K=4, SCALE=400, BASE=10, INIT_RATING=1000) -> dict:
    """FastChat's online Elo, re-written as the reference for capeval's online_elo."""
    rating = defaultdict(lambda: INIT_RATING)
    for _, model_a, model_b, winner in df[["model_a", "model_b", "winner"]].itertuples():
        ra, rb = rating[model_a], rating[model_b]
        ea = 1 / (1 + BASE ** ((rb - ra) / SCALE))
        eb = 1 / (1 + BASE ** ((ra - rb) / SCALE))
        sa = {"model_a": 1, "model_b": 0}.get(winner, 0.5)
        rating[model_a] += K * (sa - ea)
        rating[model_b] += K * (1 - sa - eb)
    return dict(rating)


def test_bradley_terry_matches_fastchat_reference_within_one_point():
    pytest.importorskip("sklearn")
    rows = synthetic_battles()
    ref = fastchat_compute_mle_elo(pd.DataFrame(rows))
    ours = bradley_terry(battles_from_rows(rows))
    assert set(ours) == set(ref.index)
    worst = max(abs(ours[m] - ref[m]) for m in ours)
    assert worst < 1.0, f"max disagreement {worst:.3f} rating points"
    # and the fit recovers the true order of strengths
    assert sorted(ours, key=ours.get, reverse=True) == list(STRENGTHS)


def test_bradley_terry_matches_reference_without_ties_and_with_anchor():
    pytest.importorskip("sklearn")
    rows = [r for r in synthetic_battles(2000, seed=3) if not r["winner"].startswith("tie")]
    ref = fastchat_compute_mle_elo(pd.DataFrame(rows))
    ours = bradley_terry(battles_from_rows(rows), anchor="delta", anchor_rating=1114.0)
    assert ours["delta"] == pytest.approx(1114.0)
    shift = 1114.0 - ref["delta"]
    assert max(abs(ours[m] - (ref[m] + shift)) for m in ours) < 1.0


def test_two_models_closed_form():
    # 30 wins, 10 losses, 10 ties for A: win share 0.7, so R_A - R_B = 400 log10(0.7 / 0.3)
    battles = [Battle("A", "B", "model_a")] * 30 + [Battle("B", "A", "model_a")] * 10 + [Battle("A", "B", "tie")] * 10
    r = bradley_terry(battles)
    assert r["A"] - r["B"] == pytest.approx(400 * math.log10(0.7 / 0.3), abs=1e-3)
    assert (r["A"] + r["B"]) / 2 == pytest.approx(1000.0)


def test_online_elo_equals_fastchat_compute_elo():
    rows = synthetic_battles(500, seed=11)
    ref = fastchat_compute_elo(pd.DataFrame(rows))
    ours = online_elo(battles_from_rows(rows))
    assert ours == pytest.approx(ref, rel=1e-12)  # ratings ~1000: a tolerance on their scale


def test_leaderboard_cis_records_and_stability():
    rows = synthetic_battles()
    battles = battles_from_rows(rows)
    lb = arena_leaderboard(battles, n_bootstrap=200, seed=1)
    again = arena_leaderboard(battles, n_bootstrap=200, seed=1)
    assert lb == again  # seeded
    by = {r.model: r for r in lb.ratings}
    assert [r.model for r in lb.ratings] == list(STRENGTHS)
    for r in lb.ratings:
        assert r.ci_low < r.rating < r.ci_high
        assert 10 < r.ci_high - r.ci_low < 80  # ~1000 battles per model
        assert r.wins + r.losses + r.ties == r.n_battles
    assert sum(r.n_battles for r in lb.ratings) == 2 * len(rows)
    assert by["alpha"].wins == sum(
        1 for x in rows if (x["model_a"] == "alpha" and x["winner"] == "model_a") or (x["model_b"] == "alpha" and x["winner"] == "model_b")
    )
    # bravo (1150) and charlie (1135) are close; alpha and foxtrot are far from everyone
    assert lb.unstable_pairs == (("bravo", "charlie"),)
    assert all("foxtrot" not in p for p in lb.unstable_pairs)
    assert by["alpha"].rank == 1 and by["foxtrot"].rank == 6
    assert by["bravo"].rank == by["charlie"].rank == 2  # tied in rank: neither CI is above the other


def test_equal_models_are_flagged_unstable():
    rows = synthetic_battles(600, seed=5, strengths={"x": 1000, "y": 1000, "z": 1000})
    lb = arena_leaderboard(battles_from_rows(rows), n_bootstrap=200, seed=0)
    assert len(lb.unstable_pairs) == 2 and not lb.stable
    assert all(r.rank == 1 for r in lb.ratings)


def test_win_rate_matrix_counts_non_tied_battles():
    battles = [
        Battle("A", "B", "model_a"),
        Battle("A", "B", "model_a"),
        Battle("B", "A", "model_a"),
        Battle("A", "B", "tie"),
        Battle("A", "C", "model_b"),
    ]
    wr = win_rate_matrix(battles)
    i = {m: k for k, m in enumerate(wr.models)}
    assert wr.win_rate[i["A"]][i["B"]] == pytest.approx(2 / 3)
    assert wr.win_rate[i["B"]][i["A"]] == pytest.approx(1 / 3)
    assert wr.win_rate[i["C"]][i["A"]] == 1.0
    assert wr.win_rate[i["B"]][i["C"]] is None
    assert wr.battles[i["A"]][i["B"]] == 4


def test_bad_battles_are_reported():
    with pytest.raises(ArenaError, match="winner 'draw' is not one of"):
        battles_from_rows([{"model_a": "a", "model_b": "b", "winner": "draw"}])
    with pytest.raises(ArenaError, match="no 'winner' column"):
        battles_from_rows([{"model_a": "a", "model_b": "b"}])
    with pytest.raises(ArenaError, match="anchor model 'zz' has no battles"):
        bradley_terry([Battle("a", "b", "tie")], anchor="zz")


def test_undefeated_model_is_warned_about():
    battles = [Battle("champ", "x", "model_a")] * 5 + [Battle("x", "y", "model_a"), Battle("y", "x", "tie")] * 5
    lb = arena_leaderboard(battles, n_bootstrap=20, seed=0)
    assert lb.ratings[0].model == "champ"
    assert lb.warnings == (
        "champ won every battle: its maximum-likelihood rating is unbounded and the number shown is where the optimiser stopped",
    )
