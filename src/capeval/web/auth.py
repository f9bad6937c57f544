"""Who an annotator is: invite links and passwords (stored hashed), expiring sessions with CSRF tokens, quotas and rate limits."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from capeval.errors import MissingExtraError
from capeval.store import Store
from capeval.web.items import WebError

MAX_NAME = 80
MIN_PASSWORD = 8
INVITE_BYTES = 32  # secrets.token_urlsafe(32): 256 random bits, so a fast hash (sha256) is enough
SESSION_BYTES = 32


class AuthError(WebError):
    """An annotator that cannot be created or signed in as asked."""


@dataclass(frozen=True)
class Annotator:
    annotator_id: str
    name: str
    quota: int | None  # most answers (ratings + votes) this annotator may give; None: the app's default


@dataclass(frozen=True)
class SignedIn:
    """A live session: whose it is and the CSRF token every form of it must carry."""

    annotator: Annotator
    csrf: str
    expires_at: float


def token_hash(token: str) -> str:
    """How invite tokens and session cookies are stored: sha256 hex (they are random, so no salt or stretching is needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Compare secrets in time that does not depend on where they first differ."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _hasher() -> Any:
    try:
        from argon2 import PasswordHasher
    except ImportError:
        raise MissingExtraError("argon2-cffi", "web") from None
    return PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters


def check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise AuthError("an annotator needs a name", "capeval annotators add NAME")
    if len(name) > MAX_NAME:
        raise AuthError(f"the name is longer than {MAX_NAME} characters")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"the password is shorter than {MIN_PASSWORD} characters")
    return password


def _annotator_row(store: Store, name: str) -> Any:
    rows = store.query(
        "SELECT a.annotator_id, a.name, c.kind, c.quota FROM annotators a "
        "LEFT JOIN annotator_credentials c USING (annotator_id) WHERE a.name = ? ORDER BY c.kind IS NULL, a.created_at",
        (name,),
    )
    return rows[0] if rows else None


def add_annotator(store: Store, name: str, password: str | None = None, quota: int | None = None) -> tuple[Annotator, str | None]:
    """A new annotator who signs in with `password`, or else with the invite token returned.

    A name that exists from before sign-in was required (it has ratings but no credentials) is
    given the credentials, so its ratings stay one person's; a name with credentials is refused."""
    name = check_name(name)
    if quota is not None and quota < 0:
        raise AuthError(f"quota {quota} is negative: give the most answers this annotator may give")
    row = _annotator_row(store, name)
    if row is not None and row["kind"] is not None:
        raise AuthError(
            f"annotator '{name}' already exists",
            f"`capeval annotators invite '{name}'` gives them a new invite link (and signs out the old one)",
        )
    secret = check_password(password) if password is not None else secrets.token_urlsafe(INVITE_BYTES)
    kind = "password" if password is not None else "invite"
    stored = _hasher().hash(secret) if kind == "password" else token_hash(secret)
    annotator_id = row["annotator_id"] if row is not None else uuid.uuid4().hex
    now = time.time()
    with store.transaction() as con:
        if row is None:
            con.execute("INSERT INTO annotators (annotator_id, name, created_at) VALUES (?,?,?)", (annotator_id, name, now))
        con.execute(
            "INSERT INTO annotator_credentials (annotator_id, kind, secret_hash, quota, created_at) VALUES (?,?,?,?,?)",
            (annotator_id, kind, stored, quota, now),
        )
    return Annotator(annotator_id, name, quota), (secret if kind == "invite" else None)


def reset_credentials(store: Store, name: str, password: str | None = None) -> str | None:
    """Replace an annotator's invite link or password (the new invite token is returned) and end their sessions."""
    name = check_name(name)
    row = _annotator_row(store, name)
    if row is None:
        raise AuthError(f"no annotator '{name}'", "capeval annotators list")
    secret = check_password(password) if password is not None else secrets.token_urlsafe(INVITE_BYTES)
    kind = "password" if password is not None else "invite"
    stored = _hasher().hash(secret) if kind == "password" else token_hash(secret)
    with store.transaction() as con:
        con.execute(
            "INSERT INTO annotator_credentials (annotator_id, kind, secret_hash, quota, created_at) VALUES (?,?,?,?,?) "
            "ON CONFLICT (annotator_id) DO UPDATE SET kind = excluded.kind, secret_hash = excluded.secret_hash, "
            "created_at = excluded.created_at",
            (row["annotator_id"], kind, stored, None, time.time()),
        )
        con.execute("DELETE FROM annotator_sessions WHERE annotator_id = ?", (row["annotator_id"],))
    return secret if kind == "invite" else None


def set_quota(store: Store, name: str, quota: int | None) -> None:
    row = _annotator_row(store, check_name(name))
    if row is None or row["kind"] is None:
        raise AuthError(f"no annotator '{name}' with sign-in credentials", "capeval annotators add NAME")
    if quota is not None and quota < 0:
        raise AuthError(f"quota {quota} is negative")
    store.execute("UPDATE annotator_credentials SET quota = ? WHERE annotator_id = ?", (quota, row["annotator_id"]))


def by_invite(store: Store, token: str) -> Annotator | None:
    """The annotator whose current invite link carries `token`."""
    rows = store.query(
        "SELECT a.annotator_id, a.name, c.quota FROM annotator_credentials c JOIN annotators a USING (annotator_id) "
        "WHERE c.kind = 'invite' AND c.secret_hash = ?",
        (token_hash(token),),
    )
    return Annotator(rows[0]["annotator_id"], rows[0]["name"], rows[0]["quota"]) if rows else None


# verified when the name is unknown, so an unknown name costs as long as a wrong password
_DUMMY_HASH: list[str] = []


def by_password(store: Store, name: str, password: str) -> Annotator | None:
    """The annotator `name` if `password` is theirs."""
    hasher = _hasher()
    from argon2.exceptions import InvalidHashError, VerificationError

    rows = store.query(
        "SELECT a.annotator_id, a.name, c.quota, c.secret_hash FROM annotator_credentials c "
        "JOIN annotators a USING (annotator_id) WHERE c.kind = 'password' AND a.name = ?",
        (name.strip(),),
    )
    if not rows:
        if not _DUMMY_HASH:
            _DUMMY_HASH.append(hasher.hash(secrets.token_urlsafe(16)))
        try:
            hasher.verify(_DUMMY_HASH[0], password)
        except VerificationError:
            pass
        return None
    try:
        hasher.verify(rows[0]["secret_hash"], password)
    except (VerificationError, InvalidHashError):
        return None
    return Annotator(rows[0]["annotator_id"], rows[0]["name"], rows[0]["quota"])


def open_session(store: Store, annotator: Annotator, ttl_s: float, now: float) -> tuple[str, SignedIn]:
    """A new session: the cookie value to hand the browser (stored only as its hash) and its CSRF token."""
    cookie = secrets.token_urlsafe(SESSION_BYTES)
    csrf = secrets.token_urlsafe(SESSION_BYTES)
    with store.transaction() as con:
        con.execute("DELETE FROM annotator_sessions WHERE expires_at <= ?", (now,))
        con.execute(
            "INSERT INTO annotator_sessions (session_hash, annotator_id, csrf_token, created_at, expires_at) VALUES (?,?,?,?,?)",
            (token_hash(cookie), annotator.annotator_id, csrf, now, now + ttl_s),
        )
    return cookie, SignedIn(annotator, csrf, now + ttl_s)


def session_of(store: Store, cookie: str, now: float) -> SignedIn | None:
    """The live session of a cookie; an expired one, or one whose annotator lost their credentials, is none."""
    rows = store.query(
        "SELECT s.csrf_token, s.expires_at, a.annotator_id, a.name, c.quota FROM annotator_sessions s "
        "JOIN annotators a USING (annotator_id) JOIN annotator_credentials c USING (annotator_id) "
        "WHERE s.session_hash = ?",
        (token_hash(cookie),),
    )
    if not rows or rows[0]["expires_at"] <= now:
        return None
    r = rows[0]
    return SignedIn(Annotator(r["annotator_id"], r["name"], r["quota"]), r["csrf_token"], r["expires_at"])


def close_session(store: Store, cookie: str) -> None:
    store.execute("DELETE FROM annotator_sessions WHERE session_hash = ?", (token_hash(cookie),))


@dataclass(frozen=True)
class AnnotatorCounts:
    """One annotator as the admin page and `capeval annotators list` show them."""

    annotator_id: str
    name: str
    sign_in: str  # invite, password, or none (a name from before sign-in was required)
    quota: int | None
    ratings: int
    votes: int
    last_answer: float | None


def annotator_counts(store: Store, run_ids: tuple[str, ...] | None = None) -> list[AnnotatorCounts]:
    """Every annotator with their ratings and human votes (of `run_ids` only, when given), by name."""
    where_r, where_v = "", ""
    params_r: list[str] = []
    params_v: list[str] = []
    if run_ids is not None:
        marks = ",".join("?" * len(run_ids))
        where_r = f" AND run_id IN ({marks})"
        where_v = f" AND run_a IN ({marks}) AND run_b IN ({marks})"
        params_r, params_v = list(run_ids), [*run_ids, *run_ids]
    ratings = {
        r["annotator_id"]: (r["n"], r["last"])
        for r in store.query(
            f"SELECT annotator_id, COUNT(*) AS n, MAX(created_at) AS last FROM human_ratings WHERE 1{where_r} GROUP BY annotator_id",
            params_r,
        )
    }
    votes = {
        r["annotator_id"]: (r["n"], r["last"])
        for r in store.query(
            f"SELECT annotator_id, COUNT(*) AS n, MAX(created_at) AS last FROM pairwise_votes "
            f"WHERE source = 'human'{where_v} GROUP BY annotator_id",
            params_v,
        )
    }
    out = []
    for r in store.query(
        "SELECT a.annotator_id, a.name, c.kind, c.quota FROM annotators a "
        "LEFT JOIN annotator_credentials c USING (annotator_id) ORDER BY a.name, a.created_at"
    ):
        n_r, last_r = ratings.get(r["annotator_id"], (0, None))
        n_v, last_v = votes.get(r["annotator_id"], (0, None))
        lasts = [t for t in (last_r, last_v) if t is not None]
        out.append(AnnotatorCounts(
            r["annotator_id"], r["name"] or "", r["kind"] or "none", r["quota"], n_r, n_v, max(lasts) if lasts else None
        ))
    return out


class RateLimiter:
    """At most `limit` events per `window_s` seconds per key (a sliding window); `clock` is injectable for tests."""

    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1:
            raise WebError(f"a rate limit of {limit} per {window_s:g} s lets nobody answer", "give at least 1")
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait_s(self, key: str) -> float:
        """0 if `key` may act now (and the event is counted), else the seconds until it may."""
        now = self.clock()
        with self._lock:
            events = self._events.setdefault(key, deque())
            while events and events[0] <= now - self.window_s:
                events.popleft()
            if len(events) >= self.limit:
                return events[0] + self.window_s - now
            events.append(now)
            return 0.0
