"""What the report reads from the store: runs, their samples and scores, votes and human ratings."""

from __future__ import annotations

import hashlib
import json
import math
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capeval.analysis.tables import Scale, scores_to_100
from capeval.errors import CapevalError
from capeval.store import Store
from capeval.types import MetricResult, RunResult

# Sample metadata keys that hold a judge's written reasoning or verdict, most specific first.
RATIONALE_KEYS = ("judge_rationale", "rationale", "judgement", "judgment", "judge_output", "verdict", "explanation")


class ReportError(CapevalError):
    """Runs or options the report cannot be built from."""


@dataclass(frozen=True)
class SampleRecord:
    """One sample of one run as the report shows it; `anchor` is its element id in the page."""

    run_id: str
    model: str
    task: str
    sample_id: str
    anchor: str
    prompt: str
    outputs: tuple[str, ...]
    extracted: str | None
    target: Any
    parsed: bool
    scores: Mapping[str, float]
    capabilities: tuple[str, ...]
    rationale: str | None
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class RunRecord:
    """A finished run with its samples, grouped by task in run order."""

    run_id: str
    model: str
    label: str  # the model name, made unique when one model has several runs
    result: RunResult
    created_at: float
    samples: Mapping[str, Sequence[SampleRecord]]
    primary: Mapping[str, str]  # task -> the metric it is summarised by

    @property
    def prompt_config(self) -> Mapping[str, Any]:
        return dict(self.result.config.get("prompt") or {})


@dataclass(frozen=True)
class Vote:
    source: str
    prompt_id: str | None
    model_a: str
    model_b: str
    winner: str


@dataclass(frozen=True)
class HumanRating:
    run_id: str | None
    task: str | None
    sample_id: str | None
    model_id: str | None
    rating: float
    annotator_id: str | None = None
    annotator: str | None = None  # the annotator's name


@dataclass
class ReportInputs:
    """Everything the report draws on; `notes` collects what could not be read and why."""

    runs: list[RunRecord]
    votes: list[Vote] = field(default_factory=list)
    human_ratings: list[HumanRating] = field(default_factory=list)
    task_capabilities: dict[str, tuple[str, ...]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # contamination checks (capeval.report.sections.ContaminationCheck) and split gaps to chart
    contamination: list[Any] = field(default_factory=list)
    gaps: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    judge_checks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # `capeval judge-check --json`


def sample_anchor(run_id: str, task: str, sample_id: str) -> str:
    """A valid, unique HTML id for a sample: readable prefix plus a hash (ids may hold any text)."""
    digest = hashlib.sha1(f"{run_id}\x00{task}\x00{sample_id}".encode()).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{task}-{sample_id}")[:40].strip("-")
    return f"s-{slug}-{digest}"


def response_texts(response: Any) -> tuple[str, ...]:
    """The model's outputs as text: generations verbatim, log-likelihood calls as one line per choice."""
    if not isinstance(response, list):
        return (str(response),) if response is not None else ()
    out: list[str] = []
    for rec in response:
        if not isinstance(rec, Mapping):
            out.append(str(rec))
        elif rec.get("error"):
            out.append(f"[call failed: {rec['error']}]")
        elif "continuations" in rec:
            lps = list(rec.get("logprobs") or [])
            best = max(range(len(lps)), key=lambda i: lps[i]) if lps else -1
            lines = [
                f"{'▶' if i == best else ' '} {c!r}  log p = {lps[i]:.3f}" if i < len(lps) else f"  {c!r}"
                for i, c in enumerate(rec["continuations"])
            ]
            out.append("\n".join(lines))
        else:
            out.append(str(rec.get("text") or ""))
    return tuple(out)


def _rationale(metadata: Mapping[str, Any]) -> str | None:
    for k in RATIONALE_KEYS:
        v = metadata.get(k)
        if isinstance(v, str) and v.strip():
            return v
    return None


def _sample_capabilities(metadata: Mapping[str, Any], task: str, task_caps: tuple[str, ...]) -> tuple[str, ...]:
    """The sample's own "capability" (CrossEval rows carry one), else its task's single capability
    tag, else the task's name: the rule `capeval weakest-link` uses, so both give the same numbers."""
    cap = metadata.get("capability")
    if isinstance(cap, str) and cap:
        return (cap,)
    return task_caps if len(task_caps) == 1 else (task,)


def task_capabilities(task: str, notes: list[str]) -> tuple[str, ...]:
    """The capability tags a registered task declares; () for tasks the registry does not know."""
    from capeval.tasks import get_task

    try:
        return tuple(get_task(task).capabilities)
    except CapevalError:
        return ()
    except Exception as e:  # noqa: BLE001 - another task module failing to import must not sink the report
        notes.append(f"capability tags of task '{task}' could not be read ({type(e).__name__}: {e})")
        return ()


def primary_metrics(result: RunResult) -> dict[str, str]:
    """task -> its first metric, the one its tables lead with and the headline uses."""
    from capeval.analysis.stats import primary_metric

    out: dict[str, str] = {}
    for t in result.tasks:
        names = [m.metric for m in result.metrics if m.task == t]
        if names:
            out[t] = primary_metric(names)
    return out


def load_inputs(store: Store, run_ids: Sequence[str]) -> ReportInputs:
    """Read the runs (ids or unique id prefixes) with their samples, plus every vote and rating."""
    if not run_ids:
        raise ReportError("no runs given", "list runs with `capeval runs` and pass their ids")
    notes: list[str] = []
    rows: list[sqlite3.Row] = []
    for rid in run_ids:
        matches = store.query("SELECT * FROM runs WHERE run_id = ? OR run_id LIKE ?", (rid, rid + "%"))
        if not matches:
            raise ReportError(f"no run '{rid}' in {store.path}", "list runs with `capeval runs`, or pass --db")
        if len(matches) > 1 and not any(m["run_id"] == rid for m in matches):
            raise ReportError(f"run id prefix '{rid}' matches {len(matches)} runs", "give more of the id")
        row = next((m for m in matches if m["run_id"] == rid), matches[0])
        if not row["results"]:
            raise ReportError(f"run {row['run_id']} has no results (status: {row['status']})", "finish it by re-running the same command")
        if row["run_id"] not in [r["run_id"] for r in rows]:
            rows.append(row)
    caps: dict[str, tuple[str, ...]] = {}
    per_model: dict[str, int] = {}
    from capeval.analysis.tables import incomplete_note, incomplete_vote_runs
    from capeval.store import run_result_from_dict

    # Said first, in the report's notes: a run whose calls did not all get answered.
    notes.extend(n for n in (incomplete_note(store, r) for r in rows) if n)
    notes.extend(f"votes from {n}" for n in incomplete_vote_runs(store))
    results = [run_result_from_dict(json.loads(r["results"])) for r in rows]
    for res in results:
        per_model[res.model] = per_model.get(res.model, 0) + 1
    runs: list[RunRecord] = []
    for row, res in zip(rows, results):
        for t in res.tasks:
            if t not in caps:
                caps[t] = task_capabilities(t, notes)
        label = res.model if per_model[res.model] == 1 else f"{res.model} [{config_label(res)}]"
        samples: dict[str, list[SampleRecord]] = {}
        for s in store.iter_samples(res.run_id):
            bucket = samples.setdefault(s["task"], [])
            meta = s["metadata"] or {}
            bucket.append(
                SampleRecord(
                    run_id=res.run_id,
                    model=res.model,
                    task=s["task"],
                    sample_id=s["sample_id"],
                    anchor=sample_anchor(res.run_id, s["task"], s["sample_id"]),
                    prompt=s["prompt"],
                    outputs=response_texts(s["response"]),
                    extracted=s["extracted"],
                    target=s["target"],
                    parsed=s["parsed"],
                    scores=s["scores"],
                    capabilities=_sample_capabilities(meta, s["task"], caps.get(s["task"], ())),
                    rationale=_rationale(meta),
                    metadata=meta,
                )
            )
        runs.append(RunRecord(res.run_id, res.model, label, res, row["created_at"], samples, primary_metrics(res)))
    _dedupe_labels(runs)
    votes = [
        Vote(r["source"], r["prompt_id"], r["model_a"], r["model_b"], r["winner"])
        # cast order: online Elo depends on it
        for r in store.query("SELECT source, prompt_id, model_a, model_b, winner FROM pairwise_votes ORDER BY created_at, vote_id")
    ]
    ratings = [
        HumanRating(r["run_id"], r["task"], r["sample_id"], r["model_id"], float(r["rating"]), r["annotator_id"], r["name"])
        for r in store.query(
            "SELECT h.run_id, h.task, h.sample_id, h.model_id, h.rating, h.annotator_id, a.name "
            "FROM human_ratings h LEFT JOIN annotators a USING (annotator_id) ORDER BY h.rating_id"
        )
    ]
    return ReportInputs(runs, votes, ratings, caps, notes)


def config_label(res: RunResult) -> str:
    """A short name for a run's prompt setup: what differs between runs of one model."""
    p = dict(res.config.get("prompt") or {})
    parts = []
    if p.get("variant"):
        parts.append(f"prompt v{p['variant']}")
    if p.get("shots") is not None:
        parts.append(f"{p['shots']}-shot")
    if p.get("cot"):
        parts.append("CoT")
    if p.get("system"):
        parts.append("system prompt")
    if p.get("chat"):
        parts.append("chat")
    return ", ".join(parts) or "default prompt"


def _dedupe_labels(runs: list[RunRecord]) -> None:
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.label] = seen.get(r.label, 0) + 1
    for i, r in enumerate(runs):
        if seen[r.label] > 1:
            runs[i] = RunRecord(r.run_id, r.model, f"{r.label} {r.run_id[-6:]}", r.result, r.created_at, r.samples, r.primary)


def to_points(value: float, scale: Scale) -> float:
    """One value on CrossEval's 1-100 scale (0-1 values become percentages)."""
    return scores_to_100([value], scale)[0] if math.isfinite(value) else value


def metric_rows(result: RunResult, task: str) -> list[MetricResult]:
    return [m for m in result.metrics if m.task == task]


def read_judge_checks(paths: Sequence[str | Path]) -> list[tuple[str, dict[str, Any]]]:
    """(file stem, report) for each JSON written by `capeval judge-check --json`."""
    out = []
    for p in map(Path, paths):
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ReportError(f"judge-check file not found: {p}") from None
        except json.JSONDecodeError as e:
            raise ReportError(f"{p} is not JSON: {e.msg}", "pass the file written by `capeval judge-check --json`") from None
        if not isinstance(d, dict) or "overall" not in d or "verdicts" not in d:
            raise ReportError(f"{p} is not a judge-check report", "pass the file written by `capeval judge-check --json`")
        out.append((p.stem, d))
    return out
