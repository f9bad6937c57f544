"""What a model's files hold: fingerprints of local folders and GGUF files, hub snapshot commits.

A cache key that names a model folder by its path alone reuses the old answers after new weights are
saved into it (the usual train, save, evaluate loop). The fingerprint here hashes the content of every
file that changes outputs: weights, config, generation config, tokenizer files and chat templates.
Hashing gigabytes on every run would cost seconds, so a file's content hash is remembered per
(path, size, mtime, ctime, inode, safetensors header) in a small SQLite file in capeval's cache dir:
a repeat run only stats the files and reads the safetensors headers, and a file that was rewritten in
any way (new inode, size, mtime or ctime, another tensor layout) is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capeval.store.db import BUSY_TIMEOUT_S, enable_wal
from capeval.store.migrations import Migration, migrate

# Names transformers reads from a model folder, besides the weights (checked with a suffix rule
# below so new tokenizer formats are covered too); training state and documentation are left out.
_CONFIG_SUFFIXES = (".json", ".jinja", ".model", ".txt", ".tiktoken", ".py")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_NOT_MODEL = re.compile(
    r"^(optimizer|scheduler|rng_state|training_args|trainer_state|scaler|README|LICENSE|USE_POLICY|NOTICE)"
    r"|results\.json$|^capeval-weights\.json$",
    re.IGNORECASE,
)
# Files smaller than this are hashed on every run (a few milliseconds), never looked up.
_ALWAYS_HASH_BYTES = 4 << 20
_MEMO_FILE = "file-hashes.sqlite"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class SourceIdentity:
    """Where a model's files come from and what they hold.

    `name` is the stable part of the model id (the resolved folder or GGUF path, or the hub id);
    `version` what that name held when loaded: the local files' fingerprint, or the hub snapshot's
    commit (None for a hub id not found in the local hub cache). `files` maps each fingerprinted
    file to its content hash, so a change can be named."""

    name: str
    location: str
    version: str | None
    kind: str  # "local" or "hub"
    files: dict[str, str] = field(default_factory=dict)

    def tag(self) -> str:
        """What the model id adds to the name: `#fingerprint` (local files), `@commit` (hub)."""
        if self.version is None:
            return ""
        return ("#" if self.kind == "local" else "@") + self.version

    def record(self, model_id: str, base_id: str) -> dict[str, Any]:
        """The identity as the run config stores it (engine.changed_model_warning compares these)."""
        out: dict[str, Any] = {"base_id": base_id, "model_id": model_id, "location": self.location, "kind": self.kind}
        out["fingerprint" if self.kind == "local" else "revision"] = self.version
        if self.files:
            out["files"] = dict(self.files)
        return out


def _file_hashes_table(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS file_hashes (path TEXT NOT NULL, size INTEGER NOT NULL, "
        "mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, header TEXT NOT NULL, "
        "sha256 TEXT NOT NULL, hashed_at REAL NOT NULL, "
        "PRIMARY KEY (path, size, mtime_ns, ctime_ns, inode, header))"
    )


# The memo file's schema versions, applied as the store's are (store/migrations.py); append, never edit.
MEMO_MIGRATIONS = [Migration(1, "file_hashes", _file_hashes_table)]


class HashMemo:
    """Content hashes remembered per (path, size, mtime, ctime, inode, header), in SQLite so that
    several capeval processes can share it."""

    def __init__(self, path: str | Path | None = None) -> None:
        if path is None:
            from capeval.models.bundled import cache_root

            path = cache_root() / _MEMO_FILE
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        enable_wal(self.conn, BUSY_TIMEOUT_S)
        migrate(self.conn, self.path, MEMO_MIGRATIONS)
        self.hashed = 0  # files hashed in full by this memo (the bench and tests read it)

    def close(self) -> None:
        self.conn.close()

    def content_hash(self, path: Path) -> str:
        """sha256 of the file's bytes, from the memo when the file is exactly as it was hashed."""
        st = path.stat()
        if st.st_size < _ALWAYS_HASH_BYTES:
            return _sha256(path)
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, _header_hash(path))
        with self._lock:
            row = self.conn.execute(
                "SELECT sha256 FROM file_hashes WHERE path=? AND size=? AND mtime_ns=? AND ctime_ns=? AND inode=? AND header=?",
                key,
            ).fetchone()
        if row:
            return str(row[0])
        digest = _sha256(path)
        self.hashed += 1
        if path.stat().st_mtime_ns != st.st_mtime_ns:  # written while being read: do not remember
            return digest
        with self._lock:
            # old versions of this path are never looked up again
            self.conn.execute("DELETE FROM file_hashes WHERE path=?", key[:1])
            self.conn.execute(
                "INSERT OR REPLACE INTO file_hashes (path, size, mtime_ns, ctime_ns, inode, header, sha256, hashed_at) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (*key, digest, time.time()),
            )
            self.conn.commit()
        return digest


_default_memo: HashMemo | None = None


def default_memo() -> HashMemo:
    global _default_memo
    from capeval.models.bundled import cache_root

    if _default_memo is None or _default_memo.path != cache_root() / _MEMO_FILE:
        _default_memo = HashMemo()
    return _default_memo


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _header_hash(path: Path) -> str:
    """The safetensors header (tensor names, dtypes, shapes, offsets) hashed; "" for other files."""
    if path.suffix != ".safetensors":
        return ""
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return ""
        (n,) = struct.unpack("<Q", head)
        if n > 100 << 20:  # not a safetensors header: the content hash alone decides
            return ""
        return hashlib.sha256(fh.read(n)).hexdigest()[:16]


def model_files(folder: Path) -> list[Path]:
    """The files of a transformers model folder that change its outputs: weights, index, config,
    generation config, tokenizer files, chat templates and remote code (top level, plus
    `additional_chat_templates/`)."""
    out = []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or _NOT_MODEL.search(p.name):
            continue
        if p.suffix in _WEIGHT_SUFFIXES or p.suffix in _CONFIG_SUFFIXES:
            out.append(p)
    extra = folder / "additional_chat_templates"
    if extra.is_dir():
        out.extend(sorted(p for p in extra.iterdir() if p.is_file()))
    return out


def fingerprint_files(files: list[Path], root: Path, memo: HashMemo | None = None) -> tuple[str, dict[str, str]]:
    """(16-hex fingerprint, {relative name: content hash}) of `files` under `root`."""
    memo = memo or default_memo()
    hashes = {p.relative_to(root).as_posix(): memo.content_hash(p) for p in files}
    blob = json.dumps(sorted(hashes.items())).encode()
    return hashlib.sha256(blob).hexdigest()[:16], {k: v[:16] for k, v in hashes.items()}


def local_identity(path: Path, gguf_file: str | None = None, memo: HashMemo | None = None) -> SourceIdentity:
    """The identity of a model folder, or of a GGUF file (with the folder's generation config,
    which transformers also reads)."""
    folder = path.resolve()
    if gguf_file:
        files = [folder / gguf_file] + [p for p in (folder / "generation_config.json",) if p.is_file()]
        name = str(folder / gguf_file)
    else:
        files = model_files(folder)
        name = str(folder)
    fp, hashes = fingerprint_files(files, folder, memo)
    return SourceIdentity(name, name, fp, "local", hashes)


def hub_commit(repo_id: str, revision: str | None, probe: str = "config.json") -> str | None:
    """The commit of the local hub cache's snapshot of `repo_id` at `revision` (a branch, tag or
    commit; default main): what transformers loaded offline, or just downloaded. None when the
    hub cache holds no such snapshot."""
    if revision and _COMMIT.match(revision):
        return revision
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in (probe, "config.json", "tokenizer_config.json"):
        found = try_to_load_from_cache(repo_id, filename, revision=revision or "main")
        if isinstance(found, str):
            # <cache>/models--org--name/snapshots/<commit>/<file>
            parts = Path(found).parts
            if "snapshots" in parts:
                commit = parts[parts.index("snapshots") + 1]
                if _COMMIT.match(commit):
                    return commit
    return None


def settings_tag(dtype: str, chat_template: bool | str | None, max_length: int | None) -> str:
    """The part of a local model's id that its settings make: dtype, the chat template when forced
    on/off or given (its sha256), the context length when set. The transformers and vLLM backends
    share it, so the same settings read the same in both ids."""
    tag = f"|{dtype}"
    if chat_template is True:
        tag += "|chat=always"
    elif chat_template is False:
        tag += "|chat=never"
    elif isinstance(chat_template, str):
        tag += "|chat=" + hashlib.sha256(chat_template.encode()).hexdigest()[:12]
    if max_length:
        tag += f"|ctx={max_length}"
    return tag


def source_identity(source: str, revision: str | None = None, gguf_file: str | None = None) -> SourceIdentity:
    """The identity of what a backend loads from `source` (a local folder, or a hub id)."""
    path = Path(source).expanduser()
    if path.exists():
        return local_identity(path, gguf_file)
    commit = hub_commit(source, revision, gguf_file or "config.json")
    name = source + (f"/{gguf_file}" if gguf_file else "")
    if commit is None and revision:
        name += f"@{revision}"  # not in the hub cache: the revision asked for is all we know
    return SourceIdentity(name, source, commit, "hub")


def identity_changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What differs between two identity records, in words ("model.safetensors, config.json
    differ", "revision 1a2b3c4 -> 5d6e7f8")."""
    if old.get("kind") == "hub" or new.get("kind") == "hub":
        return f"revision {str(old.get('revision'))[:7]} -> {str(new.get('revision'))[:7]}"
    a, b = old.get("files") or {}, new.get("files") or {}
    names = [n for n in sorted(set(a) | set(b)) if a.get(n) != b.get(n)]
    if not names:
        return "fingerprint " + f"{old.get('fingerprint')} -> {new.get('fingerprint')}"
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"{shown} differ" if len(names) > 1 else f"{shown} differs"


__all__ = [
    "HashMemo",
    "SourceIdentity",
    "default_memo",
    "fingerprint_files",
    "hub_commit",
    "identity_changes",
    "local_identity",
    "model_files",
    "source_identity",
]
