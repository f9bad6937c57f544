"""Plain score tables for the analyses, read from the store or from a user's CSV file."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capeval.analysis.arena import Battle, battles_from_rows
from capeval.errors import CapevalError
from capeval.scoring.metrics import Scale, metric_scale

__all__ = ["Scale"]  # re-exported: the report and the weakest-link analysis take it from here

SCORES_CSV_HELP = (
    "scores CSV: either columns model,capability,score (score on the 1-100 scale) or per-item "
    "columns model,task,sample_id,metric,value (an optional capability column; otherwise the "
    "task name is the capability)"
)
BATTLES_CSV_HELP = "battles CSV: columns model_a,model_b,winner with winner one of model_a, model_b, tie, tie (bothbad)"


class TableError(CapevalError):
    """A run, CSV file or column that an analysis needs but cannot find."""


@dataclass
class RunScores:
    """Per-item scores of one run (or one model of a CSV): task -> metric -> sample id -> value."""

    name: str  # run id, or model name for CSV input
    model: str
    metrics: dict[str, list[str]] = field(default_factory=dict)  # task -> metric names, primary first
    values: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    capability: dict[tuple[str, str], str] = field(default_factory=dict)  # (task, sample id) -> capability
    items: dict[str, frozenset[str]] = field(default_factory=dict)  # task -> ids of the items the run evaluated
    selection: dict[str, str] = field(default_factory=dict)  # task -> how those items were chosen (for messages)
    incomplete: str | None = None  # why this run's numbers do not cover all its items (see incomplete_note)
    graders: dict[str, str] = field(default_factory=dict)  # task -> who graded it, where that can differ (run config)

    def add(self, task: str, sample_id: str, metric: str, value: float) -> None:
        names = self.metrics.setdefault(task, [])
        if metric not in names:
            names.append(metric)
        self.values.setdefault(task, {}).setdefault(metric, {})[sample_id] = value

    def primary(self, task: str, metric: str | None = None) -> str:
        from capeval.analysis.stats import primary_metric

        if task not in self.metrics:
            raise TableError(f"{self.name} has no scores for task '{task}'", f"its tasks: {', '.join(self.metrics)}")
        return primary_metric(self.metrics[task], metric)

    def per_item(self, task: str, metric: str | None = None) -> dict[str, float]:
        name = self.primary(task, metric)
        return self.values[task][name]


def incomplete_note(store: Any, row: Any) -> str | None:
    """A loud line when a stored run is not `finished`: `incomplete` (model calls failed for good;
    its numbers cover the answered items only), `interrupted` or still `running`; None when it
    finished with every call answered."""
    status = store.run_status(row)
    if status == "finished":
        return None
    who = f"run {row['run_id']} ({row['model_spec']})"
    if status == "incomplete":
        failed = int(json.loads(row["results"]).get("n_calls_failed") or 0) if row["results"] else 0
        return (f"{who} is INCOMPLETE: {failed} model calls failed for good; its numbers cover the answered "
                "items only (re-run it to retry them)")
    if status == "interrupted":
        return f"{who} was INTERRUPTED before it finished: its numbers cover only what it scored (re-run it to resume)"
    if status == "failed":
        return (f"{who} FAILED ({row['error']}) before it finished: its numbers cover only what it scored "
                "(fix the cause and re-run it to resume)")
    return f"{who} is still RUNNING: its numbers may change"


def open_store(db: str | Path | None) -> Any:
    from capeval.store import Store

    if db is not None and str(db) != ":memory:" and not Path(db).exists():
        raise TableError(f"database not found: {db}", "pass --db PATH of a capeval store, or set CAPEVAL_DB")
    return Store(db)


def load_run_scores(store: Any, run_id: str) -> RunScores:
    """A run's per-item scores; metric order follows the run's results (the task's own order)."""
    row = store.run(run_id)
    if row is None:
        known = ", ".join(r["run_id"] for r in store.runs(5))
        raise TableError(f"no run '{run_id}' in {store.path}", f"recent runs: {known}" if known else "the store has no runs")
    rid = row["run_id"]
    result = store.run_result(rid)
    rs = RunScores(name=rid, model=result.model if result else row["model_spec"] or row["model_id"])
    rs.incomplete = incomplete_note(store, row)
    if result:
        for m in result.metrics:
            names = rs.metrics.setdefault(m.task, [])
            if m.metric not in names:
                names.append(m.metric)
    # rowid order is insertion order, i.e. the order the scorer listed its metrics
    for r in store.query("SELECT task, sample_id, metric, value FROM scores WHERE run_id = ? ORDER BY rowid", (rid,)):
        rs.add(r["task"], r["sample_id"], r["metric"], float(r["value"]))
    items: dict[str, set[str]] = {}
    for r in store.query("SELECT task, sample_id, metadata FROM samples WHERE run_id = ?", (rid,)):
        items.setdefault(r["task"], set()).add(r["sample_id"])
        meta = json.loads(r["metadata"]) if r["metadata"] else {}
        if isinstance(meta, dict) and meta.get("capability"):
            rs.capability[(r["task"], r["sample_id"])] = str(meta["capability"])
    rs.items = {t: frozenset(ids) for t, ids in items.items()}
    rs.selection = {t: _selection(result.config if result else {}, t, len(ids)) for t, ids in items.items()}
    rs.graders = dict((result.config.get("graders") or {}) if result else {})
    # results may list aggregate-only metrics (macro means, per-group breakdowns) that have no
    # per-item values: the analyses need items, so keep only metrics scored per item
    rs.metrics = {
        t: [m for m in names if m in rs.values.get(t, {})] for t, names in rs.metrics.items() if t in rs.values
    }
    if not rs.values:
        raise TableError(f"run {rid} has no scores", "was it interrupted? re-run it to finish scoring")
    return rs


def _selection(config: Mapping[str, Any], task: str, n_items: int) -> str:
    """How a run chose a task's items, from its config: "stratified sample: 40 of 80 items (...)"."""
    from capeval.tasks.subsets import Subset

    subset = (config.get("subsets") or {}).get(task)
    if subset:
        return Subset.from_config(subset).describe()
    if config.get("limit") is not None and "subsets" not in config:  # runs recorded before subsets were
        return f"--limit {config['limit']}: {n_items} items"
    return f"all {n_items} items"


class SubsetMismatchError(TableError):
    """Runs that evaluated different items of a task, compared without --allow-different-subsets."""


def check_same_items(runs: Sequence[RunScores], tasks: Sequence[str]) -> None:
    """Refuse runs that evaluated different items of a shared task: their numbers describe
    different subsets (a --limit, another --sample size or seed), not different models."""
    for t in tasks:
        having = [rs for rs in runs if t in rs.items]
        if len({rs.items[t] for rs in having}) > 1:
            how = "; ".join(f"{rs.name} {rs.selection.get(t, '')}" for rs in having)
            raise SubsetMismatchError(
                f"runs evaluated different items of {t} ({how})",
                "re-run them with the same --sample N --seed S (or both in full), "
                "or pass --allow-different-subsets to compare them anyway",
            )


def _read_csv(path: str | Path) -> list[dict[str, str]]:
    p = Path(path)
    if not p.is_file():
        raise TableError(f"CSV file not found: {p}")
    with p.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise TableError(f"{p} has no rows", "the first line must be the column names")
    return rows


def _columns(rows: Sequence[Mapping[str, str]]) -> set[str]:
    return {c.strip() for c in rows[0] if c}


def read_scores_csv(path: str | Path) -> dict[str, RunScores]:
    """Per-item scores per model from a CSV with columns model,task,sample_id,metric,value."""
    rows = _read_csv(path)
    need = {"model", "task", "sample_id", "metric", "value"}
    if not need <= _columns(rows):
        raise TableError(f"{path} lacks columns {', '.join(sorted(need - _columns(rows)))}", SCORES_CSV_HELP)
    out: dict[str, RunScores] = {}
    for i, r in enumerate(rows, 2):
        try:
            value = float(r["value"])
        except ValueError:
            raise TableError(f"{path} line {i}: value '{r['value']}' is not a number") from None
        rs = out.setdefault(r["model"], RunScores(name=r["model"], model=r["model"]))
        rs.add(r["task"], r["sample_id"], r["metric"], value)
        if r.get("capability"):
            rs.capability[(r["task"], r["sample_id"])] = r["capability"]
    return out


def guess_scale(values: Sequence[float]) -> Scale:
    """The scale of scores whose metric does not say (see `metric_scale`): all in [0, 1] -> "0-1"
    (accuracy), all in [1, 5] -> "1-5" (Likert ratings), else "1-100"."""
    finite = [v for v in values if math.isfinite(v)]
    if all(0 <= v <= 1 for v in finite):
        return "0-1"
    if all(1 <= v <= 5 for v in finite):
        return "1-5"
    return "1-100"


def scores_to_100(values: Sequence[float], scale: Scale = "auto") -> list[float]:
    """Map scores onto CrossEval's 1-100 scale.

    "0-1" (accuracy) -> x 100; "1-5" (Likert judge ratings) -> (r - 1) * 24.75 + 1, CrossEval's
    mapping; "1-10" (MT-Bench) -> (r - 1) * 11 + 1, the same mapping from 1-10; "1-100" unchanged;
    "auto": `guess_scale`."""
    if scale == "auto":
        scale = guess_scale(values)
    if scale == "0-1":
        return [v * 100 for v in values]
    if scale == "1-5":
        return [(v - 1) * 24.75 + 1 for v in values]
    if scale == "1-10":
        return [(v - 1) * 11 + 1 for v in values]
    return list(values)


def task_scale(task: str, metric: str, values: Sequence[float], scale: Scale = "auto") -> Scale:
    """The scale of one task's metric: `scale` when given, else what the metric's name says
    (`metric_scale`: a run where every CrossEval verdict is 1 has score_100 = 1.0 everywhere, not
    perfect accuracy), else guessed from `values`."""
    if scale != "auto":
        return scale
    return metric_scale(metric, task) or guess_scale(values)


def _task_capabilities(task: str) -> tuple[str, ...]:
    try:
        from capeval.tasks import get_task

        return tuple(get_task(task).capabilities)
    except CapevalError:  # a user's task name unknown to this install: fall back to the task name
        return ()


def capability_items(rs: RunScores, metric: str | None = None, scale: Scale = "auto") -> dict[str, dict[str, float]]:
    """capability -> "task/sample id" -> score on 1-100, for one run (or one model of a CSV).

    An item's capability is its sample metadata's "capability" (CrossEval), else the task's single
    capability tag, else the task name. Each task is summarised by its primary metric; a task whose
    primary metric is better when lower (bits per byte) is no capability score and is left out."""
    from capeval.scoring.metrics import higher_is_better

    out: dict[str, dict[str, float]] = {}
    for task in rs.metrics:
        name = rs.primary(task, metric if metric in rs.metrics[task] else None)
        if not higher_is_better(name):
            continue
        tags = _task_capabilities(task)
        default = tags[0] if len(tags) == 1 else task
        items = rs.values[task][name]
        for sid, v in zip(items, scores_to_100(list(items.values()), task_scale(task, name, list(items.values()), scale))):
            out.setdefault(rs.capability.get((task, sid), default), {})[f"{task}/{sid}"] = v
    return out


def capability_scores(
    runs: Sequence[RunScores], metric: str | None = None, scale: Scale = "auto"
) -> dict[str, dict[str, float]]:
    """model -> capability -> mean score on 1-100 over the items of that capability (runs of the
    same model are pooled; see `capability_items`)."""
    pooled: dict[str, dict[str, list[float]]] = {}
    for rs in runs:
        for cap, items in capability_items(rs, metric, scale).items():
            pooled.setdefault(rs.model, {}).setdefault(cap, []).extend(items.values())
    return {m: {c: sum(v) / len(v) for c, v in caps.items()} for m, caps in pooled.items()}


def read_capability_csv(path: str | Path, scale: Scale = "auto") -> dict[str, dict[str, float]]:
    """model -> capability -> score from either scores CSV format (see SCORES_CSV_HELP)."""
    rows = _read_csv(path)
    cols = _columns(rows)
    if {"model", "capability", "score"} <= cols and "sample_id" not in cols:
        from capeval.analysis.weakest_link import WeakestLinkError, scores_from_rows

        try:
            return scores_from_rows(rows)
        except WeakestLinkError as e:
            raise TableError(f"{path}: {e.args[0]}", SCORES_CSV_HELP) from None
    return capability_scores(list(read_scores_csv(path).values()), scale=scale)


def read_battles_csv(path: str | Path) -> list[Battle]:
    rows = _read_csv(path)
    need = {"model_a", "model_b", "winner"}
    if not need <= _columns(rows):
        raise TableError(f"{path} lacks columns {', '.join(sorted(need - _columns(rows)))}", BATTLES_CSV_HELP)
    return battles_from_rows(rows)


def incomplete_vote_runs(store: Any, source: str | None = None) -> list[str]:
    """incomplete_note of every run that the stored votes name (run_a / run_b) and that did not
    finish with every call answered."""
    sql = "SELECT DISTINCT run_a, run_b FROM pairwise_votes" + (" WHERE source = ?" if source else "")
    ids = sorted({r for row in store.query(sql, (source,) if source else ()) for r in (row["run_a"], row["run_b"]) if r})
    notes = []
    for rid in ids:
        rows = store.query("SELECT * FROM runs WHERE run_id = ?", (rid,))
        note = incomplete_note(store, rows[0]) if rows else None
        if note:
            notes.append(note)
    return notes


def battles_from_store(store: Any, source: str | None = None) -> list[Battle]:
    """Pairwise votes in the order they were cast (online Elo depends on the order)."""
    sql = "SELECT model_a, model_b, winner FROM pairwise_votes" + (" WHERE source = ?" if source else "")
    rows = store.query(sql + " ORDER BY created_at, vote_id", (source,) if source else ())
    return battles_from_rows(dict(r) for r in rows)


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    p = Path(path)
    if not p.is_file():
        raise TableError(f"file not found: {p}")
    with p.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise TableError(f"{p} line {i} is not JSON: {e.msg}", "one JSON object per line") from None
