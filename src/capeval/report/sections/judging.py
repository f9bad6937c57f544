"""Sections on judgements: the arena leaderboard from votes, and how well the judge agrees with people."""

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
    ci,
    json_number,
    num,
)


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
            "no pairwise votes in the store; people's votes are recorded there by the annotation web app "
            "(`capeval annotate`); for battles in a CSV file use `capeval arena --csv FILE`"
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
            "or collect ratings and votes of judged runs with `capeval annotate`"
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
                rows.append([Cell(source), Cell(scope), Cell(method), num(json_number(c.get("value")), 3), ci(json_number(c.get("ci_low")), json_number(c.get("ci_high")), 3), num(json_number(c.get("p_value")), 4), Cell(str(c.get("n", "")), cls="num")])
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
                        [svg.Interval(f"{a['n_references']} references", json_number(a["pearson"].get("value")), json_number(a["pearson"].get("ci_low")), json_number(a["pearson"].get("ci_high"))) for a in ablation],
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
                            num(json_number(a.get("value")) * 100),
                            ci(json_number(a.get("ci_low")) * 100, json_number(a.get("ci_high")) * 100),
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


def rating_pairs(runs: Sequence[RunRecord], human: Sequence[Any]) -> list[RatingPair]:
    """Pair each judged sample's score with the mean of the human ratings of that response.

    Three sources: a judge-check run's samples (scores "judge_score" and "human_mean", as
    `capeval judge-check` saves them); the store's human_ratings rows (the web app) keyed by run,
    task and sample, paired with the sample's primary score; and a sample's own metadata
    "human_rating" / "human_ratings" (a number or a list of numbers)."""
    by_key: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for h in human:
        if h.run_id and h.task and h.sample_id:
            by_key[(h.run_id, h.task, h.sample_id)].append(h.rating)
    out: list[RatingPair] = []
    for r in runs:
        for t in r.result.tasks:
            metric = r.primary.get(t)
            for s in r.samples.get(t, ()):
                cap = s.capabilities[0] if s.capabilities else t
                if "judge_score" in s.scores and "human_mean" in s.scores:
                    out.append(RatingPair(float(s.scores["judge_score"]), float(s.scores["human_mean"]), cap, s.anchor))
                    continue
                if metric is None or metric not in s.scores:
                    continue
                ratings = list(by_key.get((r.run_id, t, s.sample_id), ()))
                for key in ("human_rating", "human_ratings"):
                    own = s.metadata.get(key)
                    if isinstance(own, (int, float)):
                        ratings.append(float(own))
                    elif isinstance(own, list):
                        ratings.extend(float(v) for v in own if isinstance(v, (int, float)))
                if ratings:
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


def _verdict_readings(task: str, s: Any) -> list[tuple[str, str, float | None, tuple[float, float]]]:
    """(authors' parser, verdict text, capeval's score or None, scale) for each judge verdict a
    sample of a judge-scored task keeps (CrossEval, IMPACT, MT-Bench single-answer grading)."""
    meta, scores = s.metadata, s.scores
    out: list[tuple[str, str, float | None, tuple[float, float]]] = []
    if task == "crosseval" and meta.get("verdict"):
        out.append(("crosseval", str(meta["verdict"]), scores.get("rating"), (1.0, 5.0)))
    elif task == "impact":
        for metric in ("relevance", "coherence"):
            if meta.get(f"{metric}_verdict"):
                out.append(("instructeval", str(meta[f"{metric}_verdict"]), scores.get(metric), (1.0, 5.0)))
    elif task == "mtbench":
        texts, recipes = list(meta.get("verdicts") or []), list(meta.get("recipes") or [])
        for turn, (text, recipe) in enumerate(zip(texts, recipes), 1):
            if text and "pairwise" not in str(recipe):
                out.append(("fastchat", str(text), scores.get(f"turn{turn}"), (1.0, 10.0)))
    return out


def verdict_readings_section(runs: Sequence[RunRecord], checks: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> Section:
    """How many judge verdicts the benchmark authors' own parser reads differently from capeval, and why
    (capeval.judge.authors): the numbers to keep in mind when comparing a score with the paper's."""
    from capeval.judge.authors import PARSER_SOURCES, REASONS, audit

    sec = Section(
        "verdict-readings",
        "Judge verdicts read by the authors' parsers",
        "Each judge verdict of a judge-scored run (CrossEval, IMPACT, MT-Bench single grading) read again by the "
        "benchmark authors' own parser. A difference changes a mean compared with a published number; "
        "docs/methods.md ('Judge verdicts') lists each rule.",
    )
    header = ["run", "task", "authors' parser", "verdicts", "read differently", "why"]
    rows: list[list[Cell]] = []
    for r in runs:
        for t in r.result.tasks:
            per_parser: dict[str, list[Any]] = {}
            for s in r.samples.get(t, ()):
                for parser, text, ours, scale in _verdict_readings(t, s):
                    per_parser.setdefault(parser, []).append(audit(parser, text, ours, scale))
            for parser, found in per_parser.items():
                counts: dict[str, int] = {}
                for d in found:
                    if d is not None:
                        counts[d.reason] = counts.get(d.reason, 0) + 1
                rows.append(_readings_row(r.label, t, parser, len(found), counts, PARSER_SOURCES, REASONS))
    for label, d in checks:
        for parser, summary in (d.get("authors_reading") or {}).items():
            if parser in PARSER_SOURCES:
                rows.append(_readings_row(f"{label} (judge-check)", "judge-check", parser, int(summary.get("compared", 0)),
                                          dict(summary.get("reasons") or {}), PARSER_SOURCES, REASONS))
    if not rows:
        sec.missing = (
            "no judge verdicts in these runs; run a judge-scored task (`capeval run --tasks crosseval --judge J`) "
            "or pass `--judge-check check.json` from `capeval judge-check --json`"
        )
        return sec
    sec.tables.append(Table("Verdicts the authors' parser reads differently from capeval", header, rows))
    sec.notes.append(
        "A verdict capeval leaves unrated is never averaged in; the CrossEval authors' evaluator also re-asks the judge "
        "for a score outside 1-5, while FastChat keeps an out-of-range [[X]] and INSTRUCTEVAL turns a missing or "
        "out-of-range digit into 1."
    )
    return sec


def _readings_row(run: str, task: str, parser: str, n: int, counts: Mapping[str, int],
                  sources: Mapping[str, str], reasons: Mapping[str, str]) -> list[Cell]:
    differ = sum(counts.values())
    why = "; ".join(f"{k}: {reasons.get(reason, reason)}" for reason, k in sorted(counts.items(), key=lambda kv: -kv[1]))
    return [Cell(run), Cell(task), Cell(sources[parser]), Cell(str(n), cls="num"),
            Cell(str(differ), cls="num warn" if differ else "num"), Cell(why or "none")]
