"""One capeval process writing to a shared store (run by tests/store/test_concurrency.py).

argv: DB WORKER ROUNDS. Waits for a line on stdin so that every worker opens the store at the same
moment, then opens it and, ROUNDS times, caches a call, saves a sample with its score and records a
pairwise vote, each in its own transaction; prints the run id it wrote.
"""

from __future__ import annotations

import sys

from capeval.store import Store
from capeval.types import GenerationParams, MetricResult, Request, Response, RunResult, Score


def main() -> None:
    db, worker, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sys.stdin.readline()
    with Store(db) as store:
        model = f"model-{worker}"
        run_id = store.start_run(model, f"spec:{model}", ["t"], {"worker": worker})
        for i in range(rounds):
            req = Request(kind="generate", prompt=f"w{worker} q{i}", params=GenerationParams(max_tokens=4))
            store.put_calls(model, [(req.key(model), req, Response(text=f"a{i}", completion_tokens=1))])
            row = {"task": "t", "sample_id": f"s{i}", "prompt": req.prompt, "response": [{"text": f"a{i}"}]}
            store.save_samples(run_id, [row], [Score(f"s{i}", "t", {"acc": float(i % 2)}, f"a{i}", True, "a1")])
            store.add_pairwise_vote(model, "ref", "model_a" if i % 2 else "tie", prompt_id=f"t/s{i}", run_a=run_id)
        store.finish_run(RunResult(run_id, model, ("t",), (MetricResult("t", "acc", 0.5, 0.0, 1.0, rounds),)))
    print(run_id)


if __name__ == "__main__":
    main()
