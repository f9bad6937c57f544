"""Many capeval processes on one store file, started together on a new file, a file from before schema
versions, or a file one migration behind: none fails, no row is lost."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from capeval.store import migrations as mig

WORKER = Path(__file__).with_name("store_worker.py")
PROCESSES = 10
ROUNDS = 15


def old_schema_file(db: Path) -> int:
    """A store as the capeval before schema versions left it (pairwise_votes without run_a/run_b),
    with rows of its own; returns how many votes it holds."""
    ddl = mig.SCHEMA_1.replace(",\n    run_a TEXT,\n    run_b TEXT\n", "\n")
    assert "run_a" not in ddl
    con = sqlite3.connect(db)
    con.executescript(ddl)
    con.execute("INSERT INTO pairwise_votes (model_a, model_b, winner, created_at) VALUES ('old', 'ref', 'tie', 1)")
    con.execute("INSERT INTO runs VALUES ('old-run', 'old', 'spec', '[]', '{}', 'finished', NULL, 1, 2)")
    con.commit()
    con.close()
    assert [r[1] for r in sqlite3.connect(db).execute("PRAGMA table_info(pairwise_votes)")][-1] == "created_at"
    return 1


def previous_version_file(db: Path) -> int:
    """A store at the version before the latest (every migration but the last applied); returns its votes."""
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("BEGIN")
    for m in mig.MIGRATIONS[:-1]:
        m.apply(con)
    con.execute(f"PRAGMA user_version = {mig.latest_version() - 1}")
    con.execute("INSERT INTO pairwise_votes (model_a, model_b, winner, created_at) VALUES ('old', 'ref', 'tie', 1)")
    con.execute("INSERT INTO runs (run_id, model_id, model_spec, tasks, config, status, created_at) "
                "VALUES ('old-run', 'old', 'spec', '[]', '{}', 'finished', 1)")
    con.execute("COMMIT")
    con.close()
    return 1


@pytest.mark.parametrize("start", ["new", "old_schema", "previous_version"])
def test_processes_started_together_lose_nothing(tmp_path, start):
    db = tmp_path / "shared" / "capeval.db"
    old_votes = 0
    if start != "new":
        db.parent.mkdir()
        old_votes = (old_schema_file if start == "old_schema" else previous_version_file)(db)
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), str(db), str(i), str(ROUNDS)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(PROCESSES)
    ]
    for p in procs:  # every worker is started and waiting: release them together
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdin.close()
        p.stdout.close()
        p.stderr.close()
    errors = [err.strip().splitlines()[-1] for code, _, err in results if code != 0]
    assert errors == []
    run_ids = [out.strip() for _, out, _ in results]
    con = sqlite3.connect(db)

    def count(sql: str):
        return con.execute(sql).fetchone()[0]

    assert count("PRAGMA user_version") == mig.latest_version()
    assert count("PRAGMA journal_mode") == "wal"
    assert count("SELECT COUNT(*) FROM model_calls") == PROCESSES * ROUNDS
    assert count("SELECT COUNT(DISTINCT model_id) FROM model_calls") == PROCESSES
    assert count("SELECT COUNT(*) FROM samples") == PROCESSES * ROUNDS
    assert count("SELECT COUNT(*) FROM scores") == PROCESSES * ROUNDS
    assert count("SELECT COUNT(*) FROM pairwise_votes") == PROCESSES * ROUNDS + old_votes
    assert count("SELECT COUNT(*) FROM pairwise_votes WHERE run_a IS NOT NULL") == PROCESSES * ROUNDS
    finished = {r[0] for r in con.execute("SELECT run_id FROM runs WHERE status = 'finished' AND results IS NOT NULL")}
    assert finished >= set(run_ids) and len(set(run_ids)) == PROCESSES
    if start != "new":
        assert count("SELECT model_a FROM pairwise_votes WHERE vote_id = 1") == "old"
        assert count("SELECT status FROM runs WHERE run_id = 'old-run'") == "finished"
    con.close()
