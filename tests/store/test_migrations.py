"""The store's schema versions: new files, unversioned old files, newer files, added migrations, response formats."""

from __future__ import annotations

import json
import sqlite3

import pytest

from capeval.errors import StoreError
from capeval.store import Store
from capeval.store import migrations as mig
from capeval.types import GenerationParams, MetricResult, Request, Response, RunResult, Score

# pairwise_votes as the first capeval that had it wrote it: no run_a / run_b
OLD_VOTES = (
    "CREATE TABLE pairwise_votes (vote_id INTEGER PRIMARY KEY AUTOINCREMENT, annotator_id TEXT, "
    "source TEXT NOT NULL DEFAULT 'human', prompt_id TEXT, model_a TEXT NOT NULL, model_b TEXT NOT NULL, "
    "winner TEXT NOT NULL, explanation TEXT, created_at REAL NOT NULL)"
)


def table_columns(db) -> dict[str, list[str]]:
    con = sqlite3.connect(db)
    try:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        return {t: [r[1] for r in con.execute(f"PRAGMA table_info({t})")] for t in sorted(names)}
    finally:
        con.close()


def user_version(db) -> int:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA user_version").fetchone()[0]
    finally:
        con.close()


def reference_columns() -> dict[str, list[str]]:
    """The tables and columns of a new file: every migration applied to an empty database."""
    con = sqlite3.connect(":memory:")
    for m in mig.MIGRATIONS:
        m.apply(con)
    names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
    return {t: [r[1] for r in con.execute(f"PRAGMA table_info({t})")] for t in sorted(names)}


def test_a_new_file_is_at_the_latest_version_in_wal_mode(tmp_path):
    db = tmp_path / "new" / "s.db"
    with Store(db) as s:
        assert s.schema_version == mig.latest_version() == len(mig.MIGRATIONS)
        assert s.query("PRAGMA journal_mode")[0][0] == "wal"
    assert user_version(db) == mig.latest_version()
    assert table_columns(db)["pairwise_votes"][-2:] == ["run_a", "run_b"]
    assert [m.version for m in mig.MIGRATIONS] == list(range(1, len(mig.MIGRATIONS) + 1))
    assert mig.MIGRATIONS[0].name == "initial_schema"


def test_an_unversioned_file_with_old_columns_is_brought_forward(tmp_path):
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute(OLD_VOTES)
    # an even older runs table, lacking finished_at and results (NOT NULL columns are added nullable)
    con.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, model_id TEXT NOT NULL, model_spec TEXT NOT NULL, "
                "tasks TEXT NOT NULL, config TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL)")
    con.execute("INSERT INTO pairwise_votes (model_a, model_b, winner, created_at) VALUES ('x', 'y', 'model_a', 1)")
    con.execute("INSERT INTO runs VALUES ('r0', 'm', 'spec', '[\"t\"]', '{}', 'finished', 1.0)")
    # samples without request_keys, metadata and the JSON target
    con.execute("CREATE TABLE samples (run_id TEXT NOT NULL, task TEXT NOT NULL, sample_id TEXT NOT NULL, prompt TEXT NOT NULL, "
                "response TEXT, extracted TEXT, parsed INTEGER NOT NULL, PRIMARY KEY (run_id, task, sample_id))")
    con.commit()
    con.close()
    assert user_version(db) == 0
    with Store(db) as s:
        # the added columns sit at the end of the old tables: writes must name their columns
        run_id = s.start_run("m2", "spec2", ["t"], {})
        s.save_samples(run_id, [{"task": "t", "sample_id": "a", "prompt": "P", "response": [{"text": "B"}]}],
                       [Score("a", "t", {"acc": 1.0}, "B", True, "B")])
        result = RunResult(run_id, "spec2", ("t",), (MetricResult("t", "acc", 1.0, 1.0, 1.0, 1),))
        s.finish_run(result)
        assert s.run_result(run_id) == result and s.run(run_id)["status"] == "finished"
        assert [(x["sample_id"], x["response"], x["scores"]) for x in s.iter_samples(run_id)] == [("a", [{"text": "B"}], {"acc": 1.0})]
        s.add_pairwise_vote("y", "x", "tie", prompt_id="t/1", run_a="r1", run_b="r2")
        votes = [tuple(r) for r in s.query("SELECT model_a, model_b, winner, run_a, run_b FROM pairwise_votes ORDER BY vote_id")]
        assert s.run("r0")["status"] == "finished" and s.run("r0")["finished_at"] is None
        assert s.runs()[-1]["run_id"] == "r0"
    assert votes == [("x", "y", "model_a", None, None), ("y", "x", "tie", "r1", "r2")]
    assert user_version(db) == mig.latest_version()
    got, want = table_columns(db), reference_columns()
    assert set(got) == set(want)
    assert {t: sorted(c) for t, c in got.items()} == {t: sorted(c) for t, c in want.items()}


def test_a_file_from_a_newer_capeval_is_refused_and_left_alone(tmp_path):
    db = tmp_path / "future.db"
    with Store(db):
        pass
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {mig.latest_version() + 3}")
    con.commit()
    con.close()
    with pytest.raises(StoreError) as e:
        Store(db)
    assert e.value.args[0] == (
        f"the store {db} was written by a newer capeval (schema version {mig.latest_version() + 3}; "
        f"this capeval knows up to {mig.latest_version()})"
    )
    assert "upgrade capeval" in e.value.hint
    assert user_version(db) == mig.latest_version() + 3
    # the same check holds under the migration lock, for a file another process made newer meanwhile
    con = sqlite3.connect(db)
    with pytest.raises(StoreError, match="written by a newer capeval"):
        mig.migrate(con, db)
    con.close()


def test_a_new_migration_runs_once_and_a_failing_one_changes_nothing(tmp_path, monkeypatch):
    db = tmp_path / "s.db"
    with Store(db) as s:
        s.add_pairwise_vote("a", "b", "tie")
    applied: list[int] = []

    def add_vote_weight(conn: sqlite3.Connection) -> None:
        applied.append(1)
        mig.add_column(conn, "pairwise_votes", "weight", "REAL NOT NULL DEFAULT 1.0")

    v = mig.latest_version() + 1
    monkeypatch.setattr(mig, "MIGRATIONS", [*mig.MIGRATIONS, mig.Migration(v, "vote_weight", add_vote_weight)])
    for _ in range(3):
        with Store(db) as s:
            assert s.schema_version == v
            assert [tuple(r) for r in s.query("SELECT model_a, weight FROM pairwise_votes")] == [("a", 1.0)]
    assert applied == [1]

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        conn.execute("ALTER TABLE no_such_table ADD COLUMN y TEXT")

    monkeypatch.setattr(mig, "MIGRATIONS", [*mig.MIGRATIONS, mig.Migration(v + 1, "broken", broken)])
    with pytest.raises(StoreError, match="no such table: no_such_table"):
        Store(db)
    assert user_version(db) == v
    assert "half_done" not in table_columns(db)


def test_stored_responses_carry_a_format_version_and_old_rows_still_read(tmp_path):
    r = Response(text="yes", completion_tokens=1, finish_reason="stop")
    assert json.loads(r.to_json())["format_version"] == 1
    assert Response.from_json(r.to_json()) == Response(text="yes", completion_tokens=1, finish_reason="stop", cached=True)
    old = json.dumps({"text": "old", "logprobs": [], "is_greedy": [], "n_tokens": [], "prompt_tokens": 3,
                      "completion_tokens": 1, "latency_s": 0.1, "error": None})  # no format_version, no finish_reason
    assert Response.from_json(old).text == "old" and Response.from_json(old).prompt_tokens == 3
    newer = json.dumps({**json.loads(r.to_json()), "format_version": 99})
    with pytest.raises(StoreError, match="format version 99; this capeval reads up to 2"):
        Response.from_json(newer)
    # format 2 added what a server said answered; an answer without it is still written as 1
    served = Response(text="yes", system_fingerprint="fp_1", served_model="gpt-x-2025")
    assert json.loads(served.to_json())["format_version"] == 2
    assert Response.from_json(served.to_json()) == Response(text="yes", system_fingerprint="fp_1", served_model="gpt-x-2025", cached=True)
    # through the store: an old cache row written before format versions is a cache hit
    req = Request(kind="generate", prompt="p", params=GenerationParams(max_tokens=4))
    with Store(tmp_path / "s.db") as s:
        s.execute("INSERT INTO model_calls VALUES (?,?,?,?,?,?,?,?,?)", (req.key("m"), "m", "generate", "{}", old, 0.1, 3, 1, 0.0))
        assert s.get_calls([req.key("m")])[req.key("m")].text == "old"
