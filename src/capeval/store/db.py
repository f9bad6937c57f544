"""SQLite store: the model-call cache, runs, samples and scores, and people's ratings."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from capeval.errors import StoreError
from capeval.store.migrations import check_before_opening, migrate, schema_version
from capeval.types import MetricResult, Request, Response, RunResult, Score

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger("capeval.store")

# How long an open or a write waits for another process's write lock before "database is locked".
BUSY_TIMEOUT_S = 60.0
# Run states: `running` (its process is alive), `finished` (every call answered), `incomplete`
# (some model calls failed for good; metrics cover the answered items), `interrupted` (stopped by
# a signal, or its process is gone), `failed` (an error ended it; `runs.error` says which).
# Re-running the same command resumes the last three: stored model calls are not sent again.
RUN_STATES = ("running", "finished", "incomplete", "interrupted", "failed")
# A run on another host is taken for dead when its heartbeat is older than this (seconds); a
# running capeval beats every HEARTBEAT_S.
HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0


# Option names whose values are credentials: never written to the store or a results file.
SECRET_KEY = re.compile(r"(?i)^(.*[_-])?(api[_-]?key|token|secret|password|passwd|authorization|credentials?)$")
REDACTED = "<redacted>"


def redact_secrets(value: Any) -> Any:
    """`value` with every credential-named entry (api_key, hf_token, password, Authorization, ...)
    of every mapping inside it replaced by REDACTED; other values are kept as they are."""
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and SECRET_KEY.match(k) and v is not None else redact_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact_secrets(v) for v in value]
    return value


def default_db_path() -> Path:
    """$CAPEVAL_DB, else capeval.db in the user's data dir."""
    env = os.environ.get("CAPEVAL_DB")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("capeval")) / "capeval.db"


class Store:
    """One SQLite file shared by any number of processes (WAL, busy timeout, versioned schema).

    Writes commit immediately so a killed run loses nothing it finished.
    """

    def __init__(self, path: str | Path | None = None, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        """Open (creating if needed) and migrate the store; a path that cannot be a store raises StoreError."""
        self.path = Path(path) if path else default_db_path()
        self._lock = threading.RLock()
        self.conn = open_store(self.path, busy_timeout_s)

    @property
    def schema_version(self) -> int:
        return schema_version(self.conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _checked(self) -> Iterator[None]:
        """SQLite's "database disk image is malformed" (a damaged page met by a read or write) as a
        StoreError that says how to recover the store, instead of a traceback."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            if not is_damage(e):
                raise
            try:
                self.conn.rollback()  # a write cut short leaves no open transaction behind
            except sqlite3.Error:
                pass
            raise damaged_store_error(self.path, e) from None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock, self._checked():
            cur = self.conn.execute(sql, params)
            self.conn.commit()
            return cur

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection under the store's lock for several statements that stand or fall together."""
        with self._lock:
            try:
                yield self.conn
            except BaseException:
                self.conn.rollback()
                raise
            self.conn.commit()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock, self._checked():
            self.conn.row_factory = sqlite3.Row
            try:
                return list(self.conn.execute(sql, params))
            finally:
                self.conn.row_factory = None

    # ---- the model-call cache ---------------------------------------------------------------
    def get_calls(self, keys: Iterable[str]) -> dict[str, Response]:
        keys = list(keys)
        out: dict[str, Response] = {}
        with self._lock, self._checked():
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
        sql = (
            "INSERT OR REPLACE INTO model_calls (key, model_id, kind, request, response, latency_s, prompt_tokens, "
            "completion_tokens, created_at) VALUES (?,?,?,?,?,?,?,?,?)"
        )
        with self._lock, self._checked():
            try:
                self.conn.executemany(sql, rows)
            except (UnicodeEncodeError, sqlite3.InterfaceError, OverflowError):
                # One row SQLite cannot take (text that is not valid Unicode, a number out of
                # range) must not cost the others: write them one by one and leave that one out,
                # uncached like a failed call, so the next run asks for it again.
                self.conn.rollback()
                for row in rows:
                    try:
                        self.conn.execute(sql, row)
                    except (UnicodeEncodeError, sqlite3.InterfaceError, OverflowError) as e:
                        log.warning("not caching the answer to call %s of %s: %s", row[0][:12], model_id, e)
            self.conn.commit()

    # ---- runs -------------------------------------------------------------------------------
    def start_run(self, model_id: str, model_spec: str, tasks: Sequence[str], config: Mapping[str, Any]) -> str:
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        now = time.time()
        self.execute(
            "INSERT INTO runs (run_id, model_id, model_spec, tasks, config, status, results, created_at, finished_at, "
            "pid, host, heartbeat_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, model_id, model_spec, json.dumps(list(tasks)), json.dumps(redact_secrets(config), default=str),
             "running", None,
             now, None, os.getpid(), socket.gethostname(), now),
        )
        return run_id

    def beat(self, run_id: str) -> None:
        """Record that the process running `run_id` is alive."""
        self.execute("UPDATE runs SET heartbeat_at=? WHERE run_id=? AND status='running'", (time.time(), run_id))

    def mark_run(self, run_id: str, status: str, error: str | None = None) -> None:
        """Set a run's state without results (an interrupted run; a failed one, with its error)."""
        if status not in RUN_STATES:
            raise ValueError(f"unknown run state {status!r}")
        self.execute(
            "UPDATE runs SET status=?, finished_at=?, error=? WHERE run_id=?", (status, time.time(), error, run_id)
        )

    def run_status(self, row: sqlite3.Row | Mapping[str, Any]) -> str:
        """A run's state as it truly is: a `running` run whose process is gone is `interrupted`.

        On this host the process id decides (a heartbeat an hour old means the id was reused);
        elsewhere, a heartbeat older than STALE_AFTER_S. A row of an older capeval without
        liveness columns cannot be running any more."""
        status = str(row["status"])
        if status != "running":
            return status
        keys = row.keys() if hasattr(row, "keys") else row
        pid = row["pid"] if "pid" in keys else None
        host = row["host"] if "host" in keys else None
        beat = row["heartbeat_at"] if "heartbeat_at" in keys else None
        age = time.time() - beat if beat is not None else None
        if pid is not None and host == socket.gethostname():
            alive = _pid_alive(int(pid)) and (age is None or age < 3600)
        else:
            alive = age is not None and age < STALE_AFTER_S
        return "running" if alive else "interrupted"

    def save_samples(self, run_id: str, rows: Sequence[dict[str, Any]], scores: Sequence[Score]) -> None:
        with self._lock, self._checked():
            self.conn.executemany(
                "INSERT OR REPLACE INTO samples (run_id, task, sample_id, prompt, response, extracted, target, parsed, metadata, "
                "request_keys) VALUES (?,?,?,?,?,?,?,?,?,?)",
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
                "INSERT OR REPLACE INTO scores (run_id, task, sample_id, metric, value) VALUES (?,?,?,?,?)",
                [(run_id, s.task, s.sample_id, m, float(v)) for s in scores for m, v in s.values.items()],
            )
            self.conn.commit()

    def finish_run(self, result: RunResult, status: str = "finished") -> None:
        # the start's config, with what scoring added (the graders) merged in
        started = self.query("SELECT config FROM runs WHERE run_id = ?", (result.run_id,))
        config = {**(json.loads(started[0]["config"]) if started else {}), **result.config}
        self.execute(
            "UPDATE runs SET status=?, results=?, config=?, finished_at=? WHERE run_id=?",
            (
                status,
                json.dumps(redact_secrets(run_result_to_dict(result)), default=str),
                json.dumps(redact_secrets(config), default=str),
                time.time(),
                result.run_id,
            ),
        )

    def runs(self, limit: int = 50) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM runs ORDER BY created_at DESC LIMIT ?", (limit,))

    def run(self, run_id: str) -> sqlite3.Row | None:
        """The runs row of `run_id`, else of the one run whose id starts with it; None when no run
        does. A prefix of several run ids raises StoreError naming them (never an arbitrary one)."""
        rows = self.query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        if rows:
            return rows[0]
        # substr, not LIKE: a prefix is taken as it is, with no wildcards ('_', '%') in it
        rows = self.query("SELECT * FROM runs WHERE substr(run_id, 1, ?) = ? ORDER BY created_at", (len(run_id), run_id))
        if len(rows) > 1:
            ids = ", ".join(r["run_id"] for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
            raise StoreError(f"run '{run_id}' is ambiguous: it starts {len(rows)} run ids", f"give more of the id: {ids}")
        return rows[0] if rows else None

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

    # ---- people's 1-5 ratings and pairwise votes (the web app writes these; capeval.web.auth keeps annotators) ----
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OSError:
        return False
    return True


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
        n_calls_failed=d.get("n_calls_failed", 0),
        config=d.get("config", {}),
        warnings=tuple(d.get("warnings", ())),
    )


def open_store(path: Path, busy_timeout_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """A connection to the store at `path`, in WAL mode and migrated to the latest schema.

    The busy timeout is set by `connect` before the first statement, so every later step waits for
    other processes instead of failing. Setting WAL is also retried by hand: switching the journal
    mode needs an exclusive lock, and when two connections holding shared locks both want it SQLite
    may answer SQLITE_BUSY at once rather than wait in the busy handler (its deadlock rule).
    """
    memory = str(path) == ":memory:"
    if not memory:
        check_store_path(path)
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=busy_timeout_s)
        check_before_opening(conn, path)
        if not memory:
            enable_wal(conn, busy_timeout_s)
        conn.execute("PRAGMA synchronous=NORMAL")
        migrate(conn, path)
        return conn
    except sqlite3.DatabaseError as e:
        if conn is not None:
            conn.close()
        raise store_error(path, e) from None
    except BaseException:
        if conn is not None:
            conn.close()
        raise


def check_store_path(path: Path) -> None:
    """Refuse, with one line saying what to do, a path SQLite could not use as a writable store."""
    if path.is_dir():
        raise StoreError(f"the store path {path} is a directory", f"pass a file name, e.g. --db {path / 'capeval.db'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(
            f"cannot create the folder of the store {path}: {e.strerror or e}", "pass --db a path in a folder you can write"
        ) from None
    if path.exists() and not os.access(path, os.W_OK):
        raise StoreError(
            f"the store {path} is read-only", f"make it writable (chmod u+w {path}) or copy it and pass --db COPY"
        )
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise StoreError(
            f"the folder of the store {path} is read-only (SQLite keeps {path.name}-wal and -shm beside it)",
            "pass --db a path in a folder you can write",
        )


# The first bytes of every SQLite file, and what capeval's first table looks like in its schema page.
SQLITE_HEADER = b"SQLite format 3\x00"
STORE_SCHEMA_MARK = b"CREATE TABLE model_calls"


def is_damage(e: sqlite3.DatabaseError) -> bool:
    """Whether SQLite's error says a file's pages cannot be read as a database."""
    msg = str(e)
    return "malformed" in msg or "not a database" in msg


def looks_damaged(path: Path) -> bool:
    """Whether a file SQLite cannot read is a damaged database rather than some other file: it
    starts with SQLite's header, or its first pages still hold capeval's table definitions."""
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return False
    return head.startswith(SQLITE_HEADER) or STORE_SCHEMA_MARK in head


def damaged_store_error(path: Path, e: sqlite3.DatabaseError) -> StoreError:
    """A damaged store (a truncated copy, a disk or sync fault): keep it, and recover what it holds."""
    return StoreError(
        f"the store {path} is damaged (SQLite says: {e})",
        f"keep a copy of it (and of {path.name}-wal if there is one), then copy what can be read into a new store: "
        f"sqlite3 {path} .recover | sqlite3 RECOVERED.db (or .dump, its last line ROLLBACK made COMMIT), "
        "and pass --db RECOVERED.db",
    )


def store_error(path: Path, e: sqlite3.DatabaseError) -> StoreError:
    msg = str(e)
    if is_damage(e) and looks_damaged(path):
        return damaged_store_error(path, e)
    if is_damage(e):
        return StoreError(
            f"{path} is not a capeval store (SQLite says: {msg})",
            "pass --db a capeval store file, or a new file name to start one",
        )
    if "readonly" in msg or "read-only" in msg:
        return StoreError(
            f"the store {path} is read-only (SQLite says: {msg})",
            "make it and its folder writable, or copy it and pass --db COPY",
        )
    if "locked" in msg or "busy" in msg:
        return StoreError(
            f"the store {path} stayed locked by another process: {msg}",
            "wait for the other capeval command to finish, or raise the busy timeout",
        )
    return StoreError(f"cannot open the store {path}: {msg}", "pass --db a capeval store file, or a new file name")


def enable_wal(conn: sqlite3.Connection, busy_timeout_s: float) -> None:
    """Put `conn`'s file in WAL mode (readers never wait for the writer), retrying while it is locked."""
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.005 + random.random() * 0.02)
