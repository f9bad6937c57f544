"""Runs for the web app tests, written through the store's own API: three models answering the same questions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from capeval.store import Store
from capeval.types import MetricResult, RunResult, Score
from capeval.web.auth import AuthError, add_annotator, reset_credentials

TASK = "qa"
N_QUESTIONS = 10
# better first; each model answers in its own style, and no answer names its model
MODELS = ("model-strong", "model-middle", "model-weak")


def answer(model: str, i: int) -> str:
    a, b = 3 * i + 4, 2 * i + 1
    if model == "model-strong":
        return f"{a} + {b} = {a + b}: add the tens, then the units."
    if model == "model-middle":
        return f"About {a + b}, I think."
    return f"Maybe {a + b + 7}?"


@dataclass
class AnnotationFixture:
    db: Path
    run_ids: dict[str, str]  # model -> run id
    model_of_text: dict[str, str] = field(default_factory=dict)  # response text -> model
    n_ratings: int = 0  # rating items over all runs
    n_battles: int = 0  # (pair of runs, shared sample) items


def add_run(store: Store, model: str, samples: list[tuple[str, str, str, str]]) -> str:
    """A finished run of `model` over (task, sample id, prompt, response) rows, scored by a 0/1 "acc"."""
    tasks = list(dict.fromkeys(t for t, _, _, _ in samples))
    run_id = store.start_run(model, model, tasks, {})
    rows = [{"task": t, "sample_id": sid, "prompt": p, "response": [{"text": text}]} for t, sid, p, text in samples]
    scores = [Score(sid, t, {"acc": float(model == "model-strong")}, None, True, "x") for t, sid, _, _ in samples]
    store.save_samples(run_id, rows, scores)
    store.finish_run(RunResult(run_id, model, tuple(tasks), tuple(MetricResult(t, "acc", 0.5, 0, 1, len(samples)) for t in tasks)))
    return run_id


def build(db: Path) -> AnnotationFixture:
    """Three runs over the same ten questions of task qa; the strong run also answered one question
    the others did not, and the weak run answered one question of another task with a shared id,
    so the battles are exactly 3 pairs x 10 questions."""
    fx = AnnotationFixture(db, {})
    with Store(db) as store:
        for model in MODELS:
            rows = []
            for i in range(N_QUESTIONS):
                a, b = 3 * i + 4, 2 * i + 1
                rows.append((TASK, f"q{i}", f"What is {a} + {b}? Explain briefly.", answer(model, i)))
            if model == "model-strong":
                rows.append((TASK, "only-strong", "Name a prime above 100.", "101 is prime <script>alert(1)</script>."))
            if model == "model-weak":
                rows.append(("other", "q0", "Spell 'cat' backwards.", "tac"))
            fx.run_ids[model] = add_run(store, model, rows)
            fx.model_of_text.update({text: model for _, _, _, text in rows})
    fx.n_ratings = len(MODELS) * N_QUESTIONS + 2
    fx.n_battles = 3 * N_QUESTIONS
    return fx


def invite(db: Path, name: str, quota: int | None = None) -> str:
    """An invite token for `name`: a new annotator's, or a new link for one that exists."""
    with Store(db) as store:
        try:
            token = add_annotator(store, name, quota=quota)[1]
        except AuthError:
            token = reset_credentials(store, name)
    assert token is not None
    return token
