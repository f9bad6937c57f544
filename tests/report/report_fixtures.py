"""Helpers for the report tests: a deterministic model, a capability-tagged task, votes and ratings."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from capeval.judge.breakdown import breakdown_metrics, group_means, metadata_key
from capeval.prompting import PromptLayout
from capeval.scoring import numeric_match
from capeval.store import Store
from capeval.tasks import Source, Task
from capeval.types import MetricResult, Request, Response, Sample, Score

# Individual capabilities and the cross capabilities made of them (CrossEval's naming: "A & B").
CAPABILITIES = ("Coding", "Reasoning", "English", "Coding & Reasoning", "English & Reasoning")
PER_CAPABILITY = 8


@dataclass
class ArithmeticModel:
    """A deterministic capeval Model for the report tests: it adds the two numbers in the prompt
    and gets a fixed, prompt-dependent share of items wrong or unreadable. The report is under test
    here, not the model, so a model whose answers are known in advance is what the test needs."""

    model_id: str
    error_rate: float
    unreadable_rate: float = 0.0
    calls: list[str] = field(default_factory=list)

    def _draw(self, prompt: str) -> float:
        h = hashlib.sha256(f"{self.model_id}|{prompt}".encode()).hexdigest()
        return int(h[:8], 16) / 0xFFFFFFFF

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        out = []
        for r in requests:
            prompt = r.prompt if isinstance(r.prompt, str) else r.prompt[-1].content
            self.calls.append(prompt)
            a, b = map(int, re.findall(r"(\d+) \+ (\d+)", prompt)[-1])
            u = self._draw(prompt)
            if u < self.unreadable_rate:
                text = "I am not sure."
            elif u < self.unreadable_rate + self.error_rate:
                text = f"The answer is {a + b + 1}."
            else:
                text = f"The answer is {a + b}."
            out.append(Response(text=text, completion_tokens=5))
        return out

    def loglikelihood(self, requests: Sequence[Request]) -> list[Response]:
        raise NotImplementedError("generation-only test model")


def _row_to_sample(row: dict, index: int, task: Task) -> Sample:
    return Sample(
        id=row["id"],
        task=task.name,
        fields={"question": row["question"]},
        target=row["answer"],
        metadata={"capability": row["capability"]},
    )


def _graded_with_rationale(sample: Sample, responses: Sequence[Response], task: Task) -> Score:
    """numeric_match plus a written rationale, the way a judge-scored task stores its reasoning."""
    s = numeric_match()(sample, responses, task)
    verdict = "correct" if s.values.get("exact_match") else "incorrect"
    rationale = f"The response gives {s.extracted!r}; the reference answer is {sample.target}. Verdict: {verdict}."
    meta = {**s.metadata, "judge_rationale": rationale, "capability": sample.metadata["capability"]}
    return Score(s.sample_id, s.task, s.values, s.extracted, s.parsed, s.target, meta)


@dataclass
class ArithmeticTask(Task):
    """The test task, with a per-capability breakdown as CrossEval's task reports one."""

    def group_metrics(self, scores: Sequence[Score]) -> list[MetricResult]:
        rows = group_means(scores, "exact_match", "capability", metadata_key("capability"))
        return breakdown_metrics(self.name, rows, ["capability"])


def write_dataset(folder: Path) -> Path:
    rows = []
    i = 0
    for cap in CAPABILITIES:
        for k in range(PER_CAPABILITY):
            a, b = 3 * i + 7, 11 * k + 2
            rows.append({"id": f"q{i:03d}", "question": f"What is {a} + {b}?", "answer": str(a + b), "capability": cap})
            i += 1
    path = folder / "arith.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def arithmetic_task(path: Path, name: str = "arith") -> Task:
    return ArithmeticTask(
        name=name,
        source=Source("local", str(path)),
        output_type="generate",
        row_to_sample_fn=_row_to_sample,
        scorer=_graded_with_rationale,
        metrics=("exact_match",),
        capabilities=("Reasoning",),
        # a paraphrased prompt: runs with PromptConfig(variant=1) feed the prompt-sensitivity section
        variants=(PromptLayout(description="Add the two numbers.", answer_prefix="Sum:"),),
    )


@dataclass
class ReportFixture:
    store: Store
    db_path: Path
    run_ids: list[str]
    models: list[str]
    n_samples: int


MODELS = (("tiny-strong", 0.15, 0.05), ("tiny-middle", 0.35, 0.05), ("tiny-weak", 0.55, 0.1))


def add_votes(store: Store, models: Sequence[str], n_per_pair: int = 30) -> None:
    """People's votes where the earlier model in `models` wins 2 of 3 decided battles (1 in 10
    is a tie), sides swapped every other battle; on every third battle a judge votes too,
    disagreeing with the person on every second of those."""
    now = time.time()
    rows = []
    for i, a in enumerate(models):
        for j, b in enumerate(models):
            if j <= i:
                continue
            for k in range(n_per_pair):
                better = "tie" if k % 10 == 9 else (b if k % 3 == 2 else a)
                ma, mb = (a, b) if k % 2 == 0 else (b, a)
                prompt = f"{a}-{b}-p{k}"
                rows.append(("human", prompt, ma, mb, _winner(better, ma, mb), now + len(rows)))
                if k % 3 == 0:
                    judged = better if k % 6 == 0 else (a if better == b else b)
                    # the judge saw the pair in the other order: pairing must go by model names
                    rows.append(("judge", prompt, mb, ma, _winner(judged, mb, ma), now + len(rows)))
    store.conn.executemany(
        "INSERT INTO pairwise_votes (source, prompt_id, model_a, model_b, winner, created_at) VALUES (?,?,?,?,?,?)",
        rows,
    )
    store.conn.commit()


def _winner(model: str, model_a: str, model_b: str) -> str:
    return "tie" if model == "tie" else "model_a" if model == model_a else "model_b"


def add_human_ratings(store: Store, run_id: str) -> int:
    """1-5 ratings of a run's responses that mostly follow its exact_match score (as people
    would rate right and wrong sums), written as the web app writes them."""
    rows = store.query(
        "SELECT task, sample_id, value FROM scores WHERE run_id = ? AND metric = 'exact_match' ORDER BY sample_id", (run_id,)
    )
    now = time.time()
    for i, r in enumerate(rows):
        rating = (4 if r["value"] else 2) + (i % 3) - 1
        store.conn.execute(
            "INSERT INTO human_ratings (annotator_id, run_id, task, sample_id, model_id, rating, explanation, created_at) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (f"ann{i % 2}", run_id, r["task"], r["sample_id"], "tiny-strong", rating, "checked the sum", now),
        )
    store.conn.commit()
    return len(rows)
