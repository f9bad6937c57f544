"""A real store for the report tests: runs written by the engine, pairwise votes and human ratings."""

from __future__ import annotations

import pytest
from report_fixtures import (
    CAPABILITIES,
    MODELS,
    PER_CAPABILITY,
    ArithmeticModel,
    ReportFixture,
    add_human_ratings,
    add_votes,
    arithmetic_task,
    write_dataset,
)

from capeval.engine import evaluate_tasks
from capeval.prompting import PromptConfig
from capeval.store import Store


@pytest.fixture(scope="session")
def report_fixture(tmp_path_factory: pytest.TempPathFactory) -> ReportFixture:
    """Three models' runs of a capability-tagged task, a prompt-variant rerun, votes and ratings."""
    folder = tmp_path_factory.mktemp("report")
    data = write_dataset(folder)
    db = folder / "capeval.db"
    store = Store(db)
    task = arithmetic_task(data)
    run_ids = []
    for name, err, unread in MODELS:
        res = evaluate_tasks(ArithmeticModel(name, err, unread), [task], store=store, progress=False)
        run_ids.append(res.run_id)
    # the same model under the paraphrased prompt: the input of the prompt-sensitivity section
    res = evaluate_tasks(ArithmeticModel("tiny-strong", 0.15, 0.05), [task], PromptConfig(variant=1), store=store, progress=False)
    run_ids.append(res.run_id)
    add_votes(store, [m for m, _, _ in MODELS])
    add_human_ratings(store, run_ids[0])
    yield ReportFixture(store, db, run_ids, [m for m, _, _ in MODELS], len(CAPABILITIES) * PER_CAPABILITY)
    store.close()
