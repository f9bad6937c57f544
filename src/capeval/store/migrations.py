"""The store's schema versions: an ordered list of named migrations, recorded in PRAGMA user_version.

A store file's `user_version` is the number of migrations applied to it. Opening a file applies the
missing ones, in order, inside one BEGIN IMMEDIATE transaction: the first process to get the write
lock migrates and the others wait on the busy timeout, then re-read the version and find nothing
left to do. So any number of processes may open an old or new file at the same moment.

To change the schema, append a function decorated with `@migration` (never edit a shipped one):
it receives the connection inside the transaction and must not commit (no `executescript`).
A file written before versions existed (user_version 0) holds some subset of migration 1's
tables and columns; migration 1 creates what is missing and adds the missing columns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from capeval.errors import StoreError


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[sqlite3.Connection], None]


MIGRATIONS: list[Migration] = []


def migration(fn: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    """Append `fn` as the next schema version (its name is the migration's name)."""
    MIGRATIONS.append(Migration(len(MIGRATIONS) + 1, fn.__name__, fn))
    return fn


def execute_script(conn: sqlite3.Connection, sql: str) -> None:
    """Run `;`-separated statements one by one (sqlite3's executescript would COMMIT first)."""
    for statement in sql.split(";"):
        if statement.strip():
            conn.execute(statement)


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def add_column(conn: sqlite3.Connection, table: str, column: str, decl: str) -> None:
    """ALTER TABLE ADD COLUMN, unless a development build already added it."""
    if column not in columns(conn, table):
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


def add_missing_columns(conn: sqlite3.Connection, ddl: str) -> None:
    """Give every table that `ddl` declares and the file already has the columns it lacks.

    The declarations are read back from `ddl` run in an in-memory database. SQLite cannot add a
    NOT NULL column without a default, nor a key column, so such a column is added as a plain
    nullable one (old rows have no value for it anyway).
    """
    reference = sqlite3.connect(":memory:")
    try:
        reference.executescript(ddl)
        tables = [r[0] for r in reference.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        for table in tables:
            have = columns(conn, table)
            if not have:
                continue
            for _, name, kind, notnull, default, pk in reference.execute(f"PRAGMA table_info({table})"):
                if name in have:
                    continue
                decl = kind or ""
                if default is not None:
                    decl += f" DEFAULT {default}" + (" NOT NULL" if notnull else "")
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
    finally:
        reference.close()


# Migration 1 is the schema as it stood when versions were introduced; edit nothing below, add
# a new migration instead.
SCHEMA_1 = """
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
)
"""


@migration
def initial_schema(conn: sqlite3.Connection) -> None:
    """Calls, runs, samples, scores, annotators, ratings and votes; brings unversioned files forward."""
    add_missing_columns(conn, SCHEMA_1)
    execute_script(conn, SCHEMA_1)


@migration
def annotator_sign_in(conn: sqlite3.Connection) -> None:
    """How annotators sign in to the web app (an invite link or a password, stored only hashed:
    sha256 of a 32-byte random invite token, argon2id of a password) with their answer quota, and
    the signed-in browsers (sha256 of the session cookie, its CSRF token, its expiry)."""
    execute_script(conn, """
CREATE TABLE IF NOT EXISTS annotator_credentials (
    annotator_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('invite', 'password')),
    secret_hash TEXT NOT NULL,
    quota INTEGER,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS annotator_credentials_secret ON annotator_credentials(secret_hash);
CREATE TABLE IF NOT EXISTS annotator_sessions (
    session_hash TEXT PRIMARY KEY,
    annotator_id TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
)
""")


@migration
def run_liveness(conn: sqlite3.Connection) -> None:
    """A run's process id, host and last heartbeat, so a `running` run whose process is gone
    can be told apart (and shown as interrupted)."""
    add_column(conn, "runs", "pid", "INTEGER")
    add_column(conn, "runs", "host", "TEXT")
    add_column(conn, "runs", "heartbeat_at", "REAL")


def latest_version(migrations: Sequence[Migration] | None = None) -> int:
    return len(MIGRATIONS if migrations is None else migrations)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def newer_store_error(path: Path | str, version: int, latest: int | None = None) -> StoreError:
    return StoreError(
        f"the store {path} was written by a newer capeval (schema version {version}; "
        f"this capeval knows up to {latest_version() if latest is None else latest})",
        "upgrade capeval (pip install -U capeval) or pass --db a different file",
    )


def check_before_opening(conn: sqlite3.Connection, path: Path | str) -> None:
    """Refuse, before anything is written (even the journal mode), a file from a newer capeval and an
    unversioned file with tables, none of them capeval's: someone else's database, left as it is."""
    version = schema_version(conn)
    if version > latest_version():
        raise newer_store_error(path, version)
    if version > 0:
        return
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
    reference = sqlite3.connect(":memory:")
    try:
        reference.executescript(SCHEMA_1)
        ours = {r[0] for r in reference.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
    finally:
        reference.close()
    if tables and not tables & ours:
        raise StoreError(
            f"{path} is a SQLite database but not a capeval store (its tables: {', '.join(sorted(tables)[:5])})",
            "pass --db a capeval store file, or a new file name to start one",
        )


def migrate(conn: sqlite3.Connection, path: Path | str, migrations: Sequence[Migration] | None = None) -> int:
    """Apply the migrations `conn`'s file lacks; returns the version it ends at.

    `migrations` defaults to the store's; another SQLite file capeval keeps (the model-file hash memo)
    passes its own list and gets the same once-only, one-process-at-a-time behaviour. The version is
    read again once the write lock is held: another process may have migrated while this one waited.
    `conn` must have its busy timeout set and no open transaction.
    """
    migrations = MIGRATIONS if migrations is None else migrations
    latest = len(migrations)
    version = schema_version(conn)
    if version > latest:
        raise newer_store_error(path, version, latest)
    if version == latest:
        return version
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(conn)
        if version > latest:
            raise newer_store_error(path, version, latest)
        for m in migrations[version:]:
            m.apply(conn)
            conn.execute(f"PRAGMA user_version = {m.version}")
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return latest


@migration
def run_error(conn: sqlite3.Connection) -> None:
    """The error that ended a `failed` run (its type and message), so the store says why the run
    stopped instead of showing it as interrupted once its process is gone."""
    add_column(conn, "runs", "error", "TEXT")
