"""judge-check's measurement: the judge's agreement with people's ratings and votes, and its stored run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from capeval.analysis.correlation import (
    CROSSEVAL_PEARSON_ANCHOR,
    Agreement,
    Correlation,
    correlations,
    correlations_by_group,
    length_bias,
    pairwise_agreement,
)
from capeval.crosseval.references import N_REFERENCES
from capeval.errors import DatasetError
from capeval.judge.check.data import HumanVote, RatedResponse
from capeval.judge.check.mtbench_votes import MTBENCH_REFERENCE_CATEGORIES
from capeval.judge.core import JudgeItem, Verdict, VerdictSummary, run_judge, summarize
from capeval.judge.recipes import JudgeRecipe, RecipeError

if TYPE_CHECKING:
    from capeval.engine import CacheMode
    from capeval.models.base import Model
    from capeval.store import Store

@dataclass
class AblationRow:
    """Agreement when the judge sees n references (CrossEval's reference-count ablation)."""

    n_references: int
    correlations: list[Correlation]
    n_rated: int
    n_failed: int
    note: str | None = None


@dataclass
class CheckReport:
    """Everything `capeval judge-check` prints and writes."""

    source: str
    recipe: str
    judge: str
    n_references: int | None
    summary: VerdictSummary
    overall: list[Correlation] = field(default_factory=list)
    by_group: dict[str, list[Correlation]] = field(default_factory=dict)
    by_slot: dict[int, list[Correlation]] = field(default_factory=dict)
    ablation: list[AblationRow] = field(default_factory=list)
    agreement: list[Agreement] = field(default_factory=list)
    agreement_by_group: dict[str, list[Agreement]] = field(default_factory=dict)
    consistency: float | None = None  # pairwise: share of verdicts that survived the position swap
    length_bias_judge: Correlation | None = None
    length_bias_human: Correlation | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    anchor_pearson: float = CROSSEVAL_PEARSON_ANCHOR
    notes: list[str] = field(default_factory=list)
    # how the benchmark authors' parser reads the same verdicts (see authors_summary)
    authors: dict[str, Any] | None = None

    def pearson(self) -> Correlation | None:
        return next((c for c in self.overall if c.method == "pearson"), None)

    def to_dict(self) -> dict[str, Any]:
        def corr(rows: Sequence[Correlation]) -> dict[str, Any]:
            return {c.method: c.to_dict() for c in rows}

        s = self.summary
        return {
            "source": self.source,
            "recipe": self.recipe,
            "judge": self.judge,
            "n_references": self.n_references,
            "verdicts": {"n": s.n, "parsed": s.parsed, "failed": s.failed, "empty": s.empty, "retried": s.retried,
                         "call_failed": s.call_failed, "failure_rate": s.failure_rate},
            "overall": corr(self.overall),
            "by_capability": {g: corr(c) for g, c in self.by_group.items()},
            "by_slot": {str(k): corr(c) for k, c in self.by_slot.items()},
            "ablation": [
                {"n_references": a.n_references, "n_rated": a.n_rated, "n_failed": a.n_failed, "note": a.note,
                 **{c.method: c.to_dict() for c in a.correlations}}
                for a in self.ablation
            ],
            "agreement": [a.to_dict() for a in self.agreement],
            "agreement_by_category": {g: [a.to_dict() for a in v] for g, v in self.agreement_by_group.items()},
            "consistency": self.consistency,
            "length_bias": {
                "judge": self.length_bias_judge.to_dict() if self.length_bias_judge else None,
                "human": self.length_bias_human.to_dict() if self.length_bias_human else None,
            },
            "anchor": {"crosseval_pearson": self.anchor_pearson},
            "notes": self.notes,
            "authors_reading": self.authors,
            "rows": self.rows,
        }


def authors_summary(judged: Sequence[tuple[JudgeRecipe, Verdict]]) -> dict[str, Any] | None:
    """How many verdict texts the authors' parser of each recipe reads differently from capeval, by
    reason (capeval.judge.authors); None when no recipe has an authors' parser."""
    from capeval.judge.authors import PARSER_SOURCES, audit_verdict, count_reasons, describe

    by_parser: dict[str, list[Any]] = {}
    compared: dict[str, int] = {}
    for recipe, v in judged:
        if recipe.authors_parser is None:
            continue
        texts = v.metadata.get("texts") if recipe.pairwise else [v.text]
        compared[recipe.authors_parser] = compared.get(recipe.authors_parser, 0) + sum(1 for t in texts or [] if t)
        by_parser.setdefault(recipe.authors_parser, []).extend(audit_verdict(recipe, v))
    if not compared:
        return None
    parsers = {}
    for parser, n in compared.items():
        counts = count_reasons(by_parser[parser])
        parsers[parser] = {"source": PARSER_SOURCES[parser], "compared": n, "differ": sum(counts.values()),
                           "reasons": counts, "summary": describe(counts, n, parser)}
    return parsers


def _scored_pairs(rated: Sequence[RatedResponse], verdicts: Sequence[Verdict]) -> list[tuple[RatedResponse, float]]:
    """(rated response, judge score) for the verdicts that parsed; failures stay out of correlations."""
    return [(r, float(v.score)) for r, v in zip(rated, verdicts) if v.parsed and v.score is not None]


def check_ratings(
    judge: Model,
    recipe: JudgeRecipe,
    rated: Sequence[RatedResponse],
    store: Store | None = None,
    n_references: int | None = None,
    ablation: bool = True,
    max_parse_retries: int = 1,
    n_resamples: int = 1000,
    seed: int = 0,
    progress: Any = None,
    source: str = "",
    cache: CacheMode = "use",
) -> CheckReport:
    """Judge each rated response and correlate the judge's rating with the mean human rating.

    Verdicts that fail to parse are counted in `summary` and left out of the correlations.
    With `ablation` and a recipe that shows references, the judge is also run with 0, 1, ... up to
    the most references any item has (calls are cached, so the main setting is not paid twice)."""
    if recipe.pairwise:
        raise RecipeError(
            f"recipe '{recipe.name}' is pairwise; human ratings need a single-answer recipe",
            "use e.g. --recipe crosseval, multi_reference, point_deduction or single",
        )
    if not rated:
        raise DatasetError("no rated responses to check", "the data file has no rows with human ratings")
    items = [r.item for r in rated]
    max_refs = max(len(i.references) for i in items)
    report_n = max_refs if n_references is None else min(n_references, max_refs)
    verdicts = run_judge(judge, recipe, items, store=store, progress=progress, n_references=report_n,
                         max_parse_retries=max_parse_retries, cache=cache)
    report = CheckReport(source=source, recipe=recipe.name, judge=judge.model_id,
                         n_references=report_n if recipe.uses_references else 0, summary=summarize(verdicts))
    pairs = _scored_pairs(rated, verdicts)
    judge_scores = [score for _, score in pairs]
    human = [r.human_mean for r, _ in pairs]
    report.overall = correlations(judge_scores, human, n_resamples=n_resamples, seed=seed)
    if len({r.group for r, _ in pairs}) > 1:
        report.by_group = {str(g): c for g, c in correlations_by_group(
            judge_scores, human, [r.group for r, _ in pairs], n_resamples=n_resamples, seed=seed).items()}
    if any(r.slot is not None for r, _ in pairs):
        report.by_slot = {int(str(g)): c for g, c in correlations_by_group(
            judge_scores, human, [r.slot for r, _ in pairs], n_resamples=n_resamples, seed=seed).items()}
        report.by_slot = dict(sorted(report.by_slot.items()))
    lengths = [len(r.item.response) for r, _ in pairs]
    report.length_bias_judge = length_bias(judge_scores, lengths, n_resamples=n_resamples, seed=seed)
    report.length_bias_human = length_bias(human, lengths, n_resamples=n_resamples, seed=seed)
    from capeval.judge.authors import audit_metadata

    by_id = {r.item.id: v for r, v in zip(rated, verdicts)}
    report.rows = [
        {"id": r.item.id, "capability": r.group, "slot": r.slot, "human_ratings": list(r.human_ratings),
         "human_mean": r.human_mean, "judge_score": by_id[r.item.id].score, "parsed": by_id[r.item.id].parsed,
         "error": by_id[r.item.id].error, "response_chars": len(r.item.response), "verdict": by_id[r.item.id].text,
         **audit_metadata(recipe, by_id[r.item.id])}
        for r in rated
    ]
    report.authors = authors_summary([(recipe, v) for v in verdicts])
    if ablation and recipe.uses_references and max_refs > 0:
        for n in range(max_refs + 1):
            vs = verdicts if n == report_n else run_judge(
                judge, recipe, items, store=store, progress=progress, n_references=n, max_parse_retries=max_parse_retries,
                cache=cache)
            ps = _scored_pairs(rated, vs)
            report.ablation.append(AblationRow(
                n, correlations([score for _, score in ps], [r.human_mean for r, _ in ps], n_resamples=n_resamples, seed=seed),
                len(ps), summarize(vs).failed))
        if any(r.slot is not None for r in rated) and max_refs < N_REFERENCES:
            report.ablation.append(AblationRow(
                N_REFERENCES, [], 0, 0,
                note="n/a when rating references: only 2 others exist"))
    elif ablation and not recipe.uses_references:
        report.notes.append(f"recipe '{recipe.name}' shows no references, so the reference-count ablation was skipped")
    return report


def check_votes(
    judge: Model,
    recipe: JudgeRecipe,
    votes: Sequence[HumanVote],
    store: Store | None = None,
    max_parse_retries: int = 1,
    n_resamples: int = 1000,
    seed: int = 0,
    progress: Any = None,
    source: str = "",
    reference_recipe: JudgeRecipe | None = None,
    cache: CacheMode = "use",
) -> CheckReport:
    """Judge each distinct pairwise item once (both orders) and compare with every human vote on it.

    Agreement is reported with ties and without (votes where judge or human said tie dropped), as
    MT-Bench's paper does. With `reference_recipe`, maths/reasoning/coding items that have a
    reference answer are judged with it (MT-Bench's reference-guided pairwise setting)."""
    if not recipe.pairwise:
        raise RecipeError(
            f"recipe '{recipe.name}' rates one answer; MT-Bench human judgments are pairwise votes",
            "use --recipe pairwise (or reference_guided_pairwise)",
        )
    if not votes:
        raise DatasetError("no human votes to check")
    unique: dict[str, JudgeItem] = {}
    for v in votes:
        unique.setdefault(v.item.id, v.item)
    def needs_reference(i: JudgeItem) -> bool:
        return bool(reference_recipe and i.capability in MTBENCH_REFERENCE_CATEGORIES and i.reference_answer)

    plain = [i for i in unique.values() if not needs_reference(i)]
    guided = [i for i in unique.values() if needs_reference(i)]
    verdicts: dict[str, Verdict] = {}
    recipe_of: dict[str, JudgeRecipe] = {}
    for rec, group in ((recipe, plain), (reference_recipe, guided)):
        if rec is not None and group:
            judged_group = run_judge(judge, rec, group, store=store, progress=progress,
                                     max_parse_retries=max_parse_retries, cache=cache)
            for item, verdict in zip(group, judged_group):
                verdicts[item.id] = verdict
                recipe_of[item.id] = rec
    all_v = list(verdicts.values())
    report = CheckReport(source=source, recipe=recipe.name + (f" + {reference_recipe.name}" if reference_recipe and guided else ""),
                         judge=judge.model_id, n_references=None, summary=summarize(all_v))
    scored = [(v, verdicts[v.item.id]) for v in votes if verdicts[v.item.id].parsed]
    judged = [j.winner or "tie" for _, j in scored]
    human = [h.winner for h, _ in scored]
    report.agreement = [pairwise_agreement(judged, human, with_ties=t, n_resamples=n_resamples, seed=seed) for t in (True, False)]
    groups: dict[str, list[int]] = {}
    for k, (h, _) in enumerate(scored):
        groups.setdefault(h.group, []).append(k)
    report.agreement_by_group = {
        g: [pairwise_agreement([judged[k] for k in idx], [human[k] for k in idx], with_ties=t, n_resamples=n_resamples, seed=seed)
            for t in (True, False)]
        for g, idx in groups.items()
    }
    parsed = [v for v in all_v if v.parsed]
    report.consistency = sum(1 for v in parsed if v.metadata.get("consistent")) / len(parsed) if parsed else None
    from capeval.judge.authors import audit_metadata

    report.rows = [
        {"id": h.item.id, "category": h.group, "human_judge": h.judge_id, "human_winner": h.winner,
         "judge_winner": verdicts[h.item.id].winner, "parsed": verdicts[h.item.id].parsed,
         "consistent": verdicts[h.item.id].metadata.get("consistent"), "error": verdicts[h.item.id].error,
         "verdict": verdicts[h.item.id].text, **audit_metadata(recipe_of[h.item.id], verdicts[h.item.id])}
        for h in votes
    ]
    report.authors = authors_summary([(recipe_of[i], v) for i, v in verdicts.items()])
    report.notes.append("CrossEval's ~0.7 Pearson anchor applies to ratings; for these pairwise votes the MT-Bench paper "
                        "reports GPT-4 agreeing with the expert votes about as often as experts agree with each other")
    return report


def save_check_run(store: Store, report: CheckReport, judge_spec: str, config: Mapping[str, Any]) -> str:
    """Record the check as a run in the store (task "judge-check"): one sample per rated response with
    the judge's verdict text, its score and the human mean, and the correlations as metrics, so
    `capeval runs show RUN_ID` traces every number to its verdicts."""
    from capeval.types import MetricResult, RunResult, Score

    task = "judge-check"
    run_id = store.start_run(report.judge, judge_spec, [task], {**config, "recipe": report.recipe})
    rows: list[dict[str, Any]] = []
    scores: list[Score] = []
    for k, r in enumerate(report.rows):
        values: dict[str, float] = {}
        if r.get("judge_score") is not None:
            values["judge_score"] = float(r["judge_score"])
        if r.get("human_mean") is not None:
            values["human_mean"] = float(r["human_mean"])
        if r.get("human_winner") is not None and r.get("parsed"):
            # an unparsed verdict is left out, as the agreement metric leaves it out
            values["agrees"] = float(r.get("judge_winner") == r["human_winner"])
        meta = {name: value for name, value in r.items() if name != "verdict"}
        # one row per human vote: several people may have voted on the same pair
        sample_id = f"{r['id']}#vote{k + 1}" if "human_winner" in r else str(r["id"])
        rows.append({"task": task, "sample_id": sample_id,
                     "prompt": "", "response": [{"text": r.get("verdict", ""), "error": r.get("error")}], "metadata": meta})
        scores.append(Score(sample_id, task, values, extracted=None if r.get("judge_score") is None
                            else f"{r['judge_score']:g}", parsed=bool(r.get("parsed")), metadata=meta))
    store.save_samples(run_id, rows, scores)
    metrics = [MetricResult(task, c.method, c.value, c.ci_low, c.ci_high, c.n, report.summary.failure_rate)
               for c in report.overall]
    metrics += [MetricResult(task, "agreement" + ("" if a.with_ties else "_without_ties"), a.value, a.ci_low, a.ci_high,
                             a.n, report.summary.failure_rate) for a in report.agreement]
    store.finish_run(RunResult(run_id, judge_spec, (task,), tuple(metrics), config=dict(config)))
    return run_id
