"""People's ratings from the store as a CSV that `capeval judge-check --data` reads (its prompt,response,human_score format)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from capeval.store import Store
from capeval.web.items import WebError, load_responses, resolve_run

# judge-check's CSV columns first (prompt, response, human_score, capability, id, reference_answer);
# the rest say where each rating came from.
RATINGS_CSV_COLUMNS = (
    "prompt", "response", "human_score", "capability", "id", "reference_answer",
    "run_id", "task", "sample_id", "model", "annotator", "explanation",
)


def rating_rows(store: Store, run_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per human rating of a shown response, oldest first; several people's ratings of
    one response share its id (judge-check averages them)."""
    if run_ids:
        runs = list(dict.fromkeys(resolve_run(store, x)["run_id"] for x in run_ids))
    else:
        runs = [r["run_id"] for r in store.query(
            "SELECT DISTINCT h.run_id FROM human_ratings h JOIN runs USING (run_id) ORDER BY h.run_id"
        )]
    shown = {(r.run_id, r.task, r.sample_id): r for r in load_responses(store, runs)} if runs else {}
    capability: dict[tuple[str, str, str], str] = {}
    for run_id in runs:
        for s in store.iter_samples(run_id):
            cap = (s["metadata"] or {}).get("capability")
            capability[(run_id, s["task"], s["sample_id"])] = cap if isinstance(cap, str) and cap else s["task"]
    out = []
    rows = store.query(
        "SELECT h.run_id, h.task, h.sample_id, h.model_id, h.rating, h.explanation, a.name "
        "FROM human_ratings h LEFT JOIN annotators a ON a.annotator_id = h.annotator_id ORDER BY h.rating_id"
    )
    for h in rows:
        key = (h["run_id"], h["task"], h["sample_id"])
        resp = shown.get(key)
        if resp is None:
            continue
        out.append({
            "prompt": resp.prompt,
            "response": resp.text,
            "human_score": h["rating"],
            "capability": capability.get(key, resp.task),
            "id": "/".join(key),
            "reference_answer": resp.reference or "",
            "run_id": resp.run_id,
            "task": resp.task,
            "sample_id": resp.sample_id,
            "model": h["model_id"] or resp.model_id,
            "annotator": h["name"] or "",
            "explanation": h["explanation"] or "",
        })
    return out


def write_ratings_csv(store: Store, out: str | Path, run_ids: Sequence[str] | None = None) -> int:
    rows = rating_rows(store, run_ids)
    if not rows:
        raise WebError("no human ratings of stored responses to export", "rate some in `capeval annotate` first")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(RATINGS_CSV_COLUMNS))
        w.writeheader()
        w.writerows(rows)
    return len(rows)
