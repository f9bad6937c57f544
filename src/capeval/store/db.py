"""SQLite store: the model-call cache, runs, samples and scores, and people's ratings."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from capeval.types import MetricResult, Request, Response, RunResult, Score

SCHEMA = """
CREATE TABLE IF NOT EXISTS model_calls (
    key TEXT PRIMARY KEY,
    model_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    latency_s REAL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS model_calls_model ON model_calls(model_id);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    model_id TEXT NOT NULL,
    model_spec TEXT NOT NULL,
    tasks TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    results TEXT,
    created_at REAL NOT NULL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT NOT NULL,
    task TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    prompt TEXT NOT NULL,
    response TEXT,
    extracted TEXT,
    target TEXT,
    parsed INTEGER NOT NULL,
    metadata TEXT,
    request_keys TEXT,
    PRIMARY KEY (run_id, task, sample_id)
);
CREATE TABLE IF NOT EXISTS scores (
    run_id TEXT NOT NULL,
    task TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (run_id, task, sample_id, metric)
);
CREATE TABLE IF NOT EXISTS annotators (
    annotator_id TEXT PRIMARY KEY,
    name TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS human_ratings (
    rating_id INTEGER PRIMARY KEY AUTOINCREMENT,
    annotator_id TEXT,
    run_id TEXT,
    task TEXT,
    sample_id TEXT,
    model_id TEXT,
    rating REAL NOT NULL,
    explanation TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pairwise_votes (
    vote_id INTEGER PRIMARY KEY AUTOINCREMENT,
    annotator_id TEXT,
    source TEXT NOT NULL DEFAULT 'human',
    prompt_id TEXT,
    model_a TEXT NOT NULL,
    model_b TEXT NOT NULL,
    winner TEXT NOT NULL CHECK (winner IN ('model_a', 'model_b', 'tie', 'tie (bothbad)')),
    explanation TEXT,
    created_at REAL NOT NULL,
    run_a TEXT,
    run_b TEXT
);
"""
# Columns added after a table first shipped: (table, column, type). Older store files get them
# by ALTER TABLE when opened, so every file has the same columns.
ADDED_COLUMNS = (("pairwise_votes", "run_a", "TEXT"), ("pairwise_votes", "run_b", "TEXT"))


def default_db_path() -> Path:
    """$CAPEVAL_DB, else capeval.db in the user's data dir."""
    env = os.environ.get("CAPEVAL_DB")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("capeval")) / "capeval.db"


class Store:
    """One SQLite file. Writes commit immediately so a killed run loses nothing it finished."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_db_path()
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)
        for table, column, kind in ADDED_COLUMNS:
            if column not in {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}:
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            cur = self.conn.execute(sql, params)
            self.conn.commit()
            return cur

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            self.conn.row_factory = sqlite3.Row
            try:
                return list(self.conn.execute(sql, params))
            finally:
                self.conn.row_factory = None

    # ---- the model-call cache ---------------------------------------------------------------
    def get_calls(self, keys: Iterable[str]) -> dict[str, Response]:
        keys = list(keys)
        out: dict[str, Response] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for key, resp in self.conn.execute(
                    f"SELECT key, response FROM model_calls WHERE key IN ({marks})", chunk
                ):
                    out[key] = Response.from_json(resp, cached=True)
        return out

    def put_calls(self, model_id: str, items: Sequence[tuple[str, Request, Response]]) -> None:
        """Cache successful answers (failed ones are retried by the next run)."""
        rows = [
            (
                key,
                model_id,
                req.kind,
                json.dumps(asdict(req), ensure_ascii=False),
                resp.to_json(),
                resp.latency_s,
                resp.prompt_tokens,
                resp.completion_tokens,
                time.time(),
            )
            for key, req, resp in items
            if resp.error is None
        ]
        with self._lock:
            self.conn.executemany("INSERT OR REPLACE INTO model_calls VALUES (?,?,?,?,?,?,?,?,?)", rows)
            self.conn.commit()

    # ---- runs -------------------------------------------------------------------------------
    def start_run(self, model_id: str, model_spec: str, tasks: Sequence[str], config: Mapping[str, Any]) -> str:
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.execute(
            "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?)",
            (run_id, model_id, model_spec, json.dumps(list(tasks)), json.dumps(config, default=str), "running", None, time.time(), None),
        )
        return run_id

    def save_samples(self, run_id: str, rows: Sequence[dict[str, Any]], scores: Sequence[Score]) -> None:
        with self._lock:
            self.conn.executemany(
                "INSERT OR REPLACE INTO samples VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        run_id,
                        r["task"],
                        r["sample_id"],
                        r["prompt"],
                        json.dumps(r.get("response"), ensure_ascii=False),
                        s.extracted,
                        json.dumps(s.target, ensure_ascii=False, default=str),
                        int(s.parsed),
                        json.dumps({**dict(r.get("metadata") or {}), **dict(s.metadata)}, ensure_ascii=False, default=str),
                        json.dumps(r.get("request_keys", [])),
                    )
                    for r, s in zip(rows, scores)
                ],
            )
            self.conn.executemany(
                "INSERT OR REPLACE INTO scores VALUES (?,?,?,?,?)",
                [(run_id, s.task, s.sample_id, m, float(v)) for s in scores for m, v in s.values.items()],
            )
            self.conn.commit()

    def finish_run(self, result: RunResult, status: str = "finished") -> None:
        self.execute(
            "UPDATE runs SET status=?, results=?, finished_at=? WHERE run_id=?",
            (status, json.dumps(run_result_to_dict(result), default=str), time.time(), result.run_id),
        )

    def runs(self, limit: int = 50) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM runs ORDER BY created_at DESC LIMIT ?", (limit,))

    def run(self, run_id: str) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM runs WHERE run_id = ? OR run_id LIKE ?", (run_id, run_id + "%"))
        return rows[0] if len(rows) >= 1 else None

    def run_result(self, run_id: str) -> RunResult | None:
        row = self.run(run_id)
        if row is None or not row["results"]:
            return None
        return run_result_from_dict(json.loads(row["results"]))

    def iter_samples(self, run_id: str, task: str | None = None) -> Iterator[dict[str, Any]]:
        sql = "SELECT * FROM samples WHERE run_id = ?" + (" AND task = ?" if task else "") + " ORDER BY task, rowid"
        params: tuple[Any, ...] = (run_id, task) if task else (run_id,)
        scores: dict[tuple[str, str], dict[str, float]] = {}
        for r in self.query("SELECT task, sample_id, metric, value FROM scores WHERE run_id = ?", (run_id,)):
            scores.setdefault((r["task"], r["sample_id"]), {})[r["metric"]] = r["value"]
        for r in self.query(sql, params):
            d = dict(r)
            for k in ("response", "target", "metadata", "request_keys"):
                d[k] = json.loads(d[k]) if d[k] is not None else None
            d["parsed"] = bool(d["parsed"])
            d["scores"] = scores.get((d["task"], d["sample_id"]), {})
            yield d

    # ---- people: annotators, their 1-5 ratings and pairwise votes (the web app writes these) ----
    def annotator_for_name(self, name: str) -> str:
        """The id of the annotator called `name`, created on first use (a returning name continues)."""
        with self._lock:
            row = self.conn.execute(
                "SELECT annotator_id FROM annotators WHERE name = ? ORDER BY created_at LIMIT 1", (name,)
            ).fetchone()
            if row:
                return str(row[0])
            annotator_id = uuid.uuid4().hex
            self.conn.execute("INSERT INTO annotators VALUES (?,?,?)", (annotator_id, name, time.time()))
            self.conn.commit()
            return annotator_id

    def annotator_name(self, annotator_id: str) -> str | None:
        rows = self.query("SELECT name FROM annotators WHERE annotator_id = ?", (annotator_id,))
        return rows[0]["name"] if rows else None

    def add_human_rating(
        self, annotator_id: str, run_id: str, task: str, sample_id: str, model_id: str, rating: float, explanation: str
    ) -> int:
        cur = self.execute(
            "INSERT INTO human_ratings (annotator_id, run_id, task, sample_id, model_id, rating, explanation, created_at) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (annotator_id, run_id, task, sample_id, model_id, float(rating), explanation, time.time()),
        )
        return int(cur.lastrowid or 0)

    def add_pairwise_vote(
        self,
        model_a: str,
        model_b: str,
        winner: str,
        *,
        source: str = "human",
        annotator_id: str | None = None,
        prompt_id: str | None = None,
        run_a: str | None = None,
        run_b: str | None = None,
        explanation: str | None = None,
    ) -> int:
        """One battle's outcome; winner is model_a, model_b, tie or "tie (bothbad)" (Chatbot Arena's labels)."""
        cur = self.execute(
            "INSERT INTO pairwise_votes (annotator_id, source, prompt_id, model_a, model_b, winner, explanation, "
            "created_at, run_a, run_b) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (annotator_id, source, prompt_id, model_a, model_b, winner, explanation, time.time(), run_a, run_b),
        )
        return int(cur.lastrowid or 0)


def run_result_to_dict(r: RunResult) -> dict[str, Any]:
    return asdict(r)


def run_result_from_dict(d: Mapping[str, Any]) -> RunResult:
    return RunResult(
        run_id=d["run_id"],
        model=d["model"],
        tasks=tuple(d["tasks"]),
        metrics=tuple(MetricResult(**m) for m in d["metrics"]),
        n_calls_cached=d.get("n_calls_cached", 0),
        n_calls_new=d.get("n_calls_new", 0),
        config=d.get("config", {}),
        warnings=tuple(d.get("warnings", ())),
    )
