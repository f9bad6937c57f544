"""judge-check's data: read a rated-responses file, tell its format, and load user CSV ratings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from capeval.errors import DatasetError
from capeval.judge.core import JudgeItem
from capeval.tasks.sources import blank_cell

SourceFormat = Literal["crosseval", "mtbench", "csv"]
CROSSEVAL_FIELDS = ("prompt_id", "capability", "prompt", "response_1", "response_1_human_1_rating")
MTBENCH_FIELDS = ("question_id", "model_a", "model_b", "winner", "conversation_a", "conversation_b")
CSV_FIELDS = ("prompt", "response", "human_score")


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


def csv_rated(rows: Sequence[Mapping[str, Any]]) -> list[RatedResponse]:
    """User rows: prompt, response, human_score (several rows for one response are averaged), capability.
    An optional id names each response; one id given to different responses becomes "id#1", "id#2"..."""
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for n, row in enumerate(rows, 1):
        if blank_cell(row.get("human_score")):
            raise DatasetError(f"row {n}: human_score is empty", "every row needs a numeric human_score")
        grouped.setdefault((str(row["prompt"]), str(row["response"])), []).append(row)
    given = [str(group[0].get("id") or "") for group in grouped.values()]
    repeated = {i for i in given if i and given.count(i) > 1}
    seen: dict[str, int] = {}
    out = []
    for k, ((prompt, response), group) in enumerate(grouped.items()):
        try:
            ratings = tuple(float(r["human_score"]) for r in group)
        except (TypeError, ValueError) as e:
            raise DatasetError(f"a human_score is not a number: {e}") from None
        capability = str(group[0].get("capability") or "all") if not blank_cell(group[0].get("capability")) else "all"
        ref_answer = group[0].get("reference_answer")
        item_id = given[k] or f"row{k + 1}"
        if item_id in repeated:  # one id on different responses: verdicts are looked up by id
            seen[item_id] = seen.get(item_id, 0) + 1
            item_id = f"{item_id}#{seen[item_id]}"
        item = JudgeItem(
            id=item_id,
            prompt=prompt,
            response=response,
            capability=None if capability == "all" else capability,
            reference_answer=None if blank_cell(ref_answer) else str(ref_answer),
        )
        out.append(RatedResponse(item, ratings, capability))
    return out
