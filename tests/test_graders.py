"""Which grader scored a task (MATH's math-verify, HumanEval's sandbox level, a judge) is part of the
run: its config, `capeval runs show`, the results JSON and the report all say it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from capeval.engine import evaluate_tasks
from capeval.report.builder import build_report
from capeval.scoring.metrics import math_grader
from capeval.scoring.sandbox import sandbox_isolation
from capeval.store import Store
from capeval.tasks import get_task
from capeval.types import Request, Response

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tasks"


@dataclass
class BoxedSeven:
    """A generation-only model whose answer is known in advance: MATH gets \\boxed{7}, code a body
    that returns None. What is under test is the bookkeeping around the graders, not a model."""

    model_id: str = "boxed-seven"

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        return [
            Response(text="    return None\n" if "def " in str(r.prompt) else "So $x = \\boxed{7}$.")
            for r in requests
        ]

    def loglikelihood(self, requests: Sequence[Request]) -> list[Response]:
        raise NotImplementedError("generation-only test model")


def test_run_records_its_graders_and_every_view_shows_them(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    tasks = [get_task("math", data=str(FIXTURES / "math")), get_task("humaneval"), get_task("gsm8k", data=str(FIXTURES / "gsm8k"))]
    result = evaluate_tasks(BoxedSeven(), tasks, store=store, limit=1, progress=False)  # type: ignore[arg-type]
    expected = {"math": math_grader(), "humaneval": f"capeval sandbox, isolation {sandbox_isolation()}"}
    assert math_grader().startswith("math-verify ")
    # gsm8k is graded by capeval's extractors alone: no grader to record
    assert result.config["graders"] == expected

    # the store's run row and its results (what --json writes: asdict of the result)
    row = store.run(result.run_id)
    assert row is not None
    assert json.loads(row["config"])["graders"] == expected
    assert json.loads(row["config"])["prompt"] == asdict(result)["config"]["prompt"]  # start config kept
    assert asdict(store.run_result(result.run_id))["config"]["graders"] == expected

    # capeval runs show
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "capeval", "runs", "show", result.run_id, "--db", str(tmp_path / "runs.db")],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert f"graded by math: {math_grader()}" in out.stdout
    assert f"graded by humaneval: capeval sandbox, isolation {sandbox_isolation()}" in out.stdout

    # the report names them, and warns when the same task was graded differently in two runs
    html = build_report(store, [result.run_id], tmp_path / "one.html").read_text()
    assert f"math graded by {math_grader()}" in html
    assert "graded differently" not in html
    other = evaluate_tasks(BoxedSeven("boxed-seven-b"), tasks[:1], store=store, limit=1, progress=False)  # type: ignore[arg-type]
    store.execute(
        "UPDATE runs SET results = json_set(results, '$.config.graders.math', 'math-verify 0.0.1') WHERE run_id = ?",
        (other.run_id,),
    )
    html = build_report(store, [result.run_id, other.run_id], tmp_path / "two.html").read_text()
    assert "WARNING: math was graded differently across runs" in html
    assert "math-verify 0.0.1" in html
    store.close()

    # capeval compare says so too
    out = subprocess.run(
        [sys.executable, "-m", "capeval", "compare", result.run_id, other.run_id, "--task", "math", "--db", str(tmp_path / "runs.db")],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert f"warning: math was graded differently (A: {math_grader()}; B: math-verify 0.0.1)" in " ".join(out.stdout.split())
