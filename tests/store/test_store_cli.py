"""A --db that cannot be a store (a directory, not SQLite, read-only, from a newer capeval): one line naming the path, through the CLI."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from capeval.store import Store, latest_version


def capeval(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "400"}  # rich would wrap a long path at 80 columns
    return subprocess.run([sys.executable, "-m", "capeval", *args], capture_output=True, text=True, timeout=120, env=env, check=False)


def assert_one_line_error(out: subprocess.CompletedProcess, message: str, hint: str) -> None:
    assert out.returncode == 2, out.stderr
    lines = out.stderr.splitlines()
    assert lines[0] == f"error: {message}"
    assert lines[1].strip().startswith("hint:") and hint in lines[1]
    assert len(lines) == 2 and "Traceback" not in out.stderr


def test_a_directory(tmp_path):
    out = capeval("runs", "list", "--db", str(tmp_path))
    assert_one_line_error(out, f"the store path {tmp_path} is a directory", f"--db {tmp_path / 'capeval.db'}")


def test_a_file_that_is_not_sqlite(tmp_path):
    db = tmp_path / "notes.txt"
    db.write_text("these are my notes, not a database\n" * 20)
    out = capeval("runs", "list", "--db", str(db))
    assert_one_line_error(out, f"{db} is not a capeval store (SQLite says: file is not a database)",
                          "pass --db a capeval store file, or a new file name")
    assert db.read_text().startswith("these are my notes")


def test_another_programs_sqlite_database_is_left_alone(tmp_path):
    db = tmp_path / "app.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    con.commit()
    con.close()
    out = capeval("runs", "list", "--db", str(db))
    assert_one_line_error(out, f"{db} is a SQLite database but not a capeval store (its tables: notes)",
                          "pass --db a capeval store file")
    con = sqlite3.connect(db)
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["notes"]
    assert con.execute("PRAGMA user_version").fetchone()[0] == 0
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()


def test_a_store_from_a_newer_capeval(tmp_path):
    db = tmp_path / "future.db"
    with Store(db):
        pass
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {latest_version() + 1}")
    con.commit()
    con.close()
    out = capeval("runs", "list", "--db", str(db))
    assert_one_line_error(
        out,
        f"the store {db} was written by a newer capeval (schema version {latest_version() + 1}; "
        f"this capeval knows up to {latest_version()})",
        "upgrade capeval",
    )


def make_read_only(path: Path) -> bool:
    """Read-only for this user: chmod for a normal user; root ignores modes, so the immutable flag."""
    if os.geteuid() != 0:
        path.chmod(0o555 if path.is_dir() else 0o444)
    elif shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False).returncode:
        return False
    return not os.access(path, os.W_OK)


def make_writable(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)
    path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_store(tmp_path, what):
    db = tmp_path / "ro" / "capeval.db"
    with Store(db) as s:
        s.start_run("m", "spec", ["t"], {})
    target = db if what == "file" else db.parent
    # a clean close leaves no -wal/-shm beside the file; a read-only folder could not create them
    assert sorted(p.name for p in db.parent.iterdir()) == ["capeval.db"]
    if not make_read_only(target):
        make_writable(target)
        pytest.skip("cannot make a file read-only for this user here (root without chattr)")
    try:
        out = capeval("runs", "list", "--db", str(db))
    finally:
        make_writable(target)
    if what == "file":
        assert_one_line_error(out, f"the store {db} is read-only", f"chmod u+w {db}")
    else:
        assert_one_line_error(
            out, f"the folder of the store {db} is read-only (SQLite keeps capeval.db-wal and -shm beside it)",
            "pass --db a path in a folder you can write",
        )
    out = capeval("runs", "list", "--db", str(db))  # writable again: it opens, and the run is still there
    assert out.returncode == 0, out.stderr
    assert "running" in out.stdout and f"(store schema version {latest_version()})" in out.stdout.replace("\n", " ")


def a_store_with_calls(db: Path, n: int = 800) -> list[str]:
    """A store of `n` cached answers (about 1 MB), all in the main file (no -wal); their keys."""
    from capeval.types import GenerationParams, Request, Response

    reqs = [Request("generate", f"prompt {i} " + "x" * 400, params=GenerationParams()) for i in range(n)]
    with Store(db) as s:
        s.start_run("m", "spec", ["t"], {})
        s.put_calls("m", [(r.key("m"), r, Response(text=f"answer {i} " + "y" * 400)) for i, r in enumerate(reqs)])
        s.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return [r.key("m") for r in reqs]


def test_a_truncated_store_is_called_damaged_with_how_to_recover_it(tmp_path):
    db = tmp_path / "capeval.db"
    a_store_with_calls(db)
    with db.open("r+b") as fh:  # a copy cut short
        fh.truncate(db.stat().st_size // 2)
    out = capeval("runs", "list", "--db", str(db))
    assert_one_line_error(out, f"the store {db} is damaged (SQLite says: database disk image is malformed)",
                          f"sqlite3 {db} .recover | sqlite3 RECOVERED.db")
    assert "keep a copy" in out.stderr


def test_a_damaged_page_met_by_a_read_is_a_store_error(tmp_path):
    from capeval.errors import StoreError

    db = tmp_path / "capeval.db"
    keys = a_store_with_calls(db)
    with db.open("r+b") as fh:  # one page in the middle overwritten (a disk or sync fault)
        fh.seek(50 * 4096)
        fh.write(b"\xff" * 4096)
    with Store(db) as s, pytest.raises(StoreError, match="is damaged") as e:
        s.get_calls(keys)
    assert ".recover" in (e.value.hint or "")
