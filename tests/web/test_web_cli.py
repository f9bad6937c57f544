"""`capeval annotate` and `capeval export-ratings` as a user runs them: a real server process on 127.0.0.1."""

from __future__ import annotations

import csv
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from web_fixtures import AnnotationFixture

from capeval.store import Store
from capeval.web.auth import add_annotator


def capeval(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "capeval", *args], capture_output=True, text=True, timeout=300, env=env, check=False, input=stdin
    )


def start_annotate(fx: AnnotationFixture, port: int, *extra: str) -> subprocess.Popen:
    """`capeval annotate` over the fixture's runs, returned once it answers on 127.0.0.1:port."""
    runs = [x for r in fx.run_ids.values() for x in ("--run", r[:-1])]
    proc = subprocess.Popen(
        [sys.executable, "-m", "capeval", "annotate", *runs, "--db", str(fx.db), "--port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            assert httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
            return proc
        except httpx.TransportError:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "capeval annotate did not start"
            time.sleep(0.2)


def stop(proc: subprocess.Popen) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=30)


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def item_of(page: str) -> str:
    return re.search(r'name="item" value="([^"]+)"', page).group(1)


def follow_invite(c: httpx.Client, link: str) -> str:
    """Open an invite link and press Start; the session's CSRF token."""
    page = c.get(link)
    assert page.status_code == 200, page.text
    token = link.rsplit("/", 1)[1]
    assert c.post("/invite", data={"token": token, "csrf": csrf_of(page.text)}).status_code == 303
    return csrf_of(c.get("/").text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_annotate_serves_the_runs_and_export_writes_the_ratings(annotation: AnnotationFixture, tmp_path) -> None:
    port = free_port()
    res = capeval("annotators", "add", "Ada", "--db", str(annotation.db), "--url", f"http://127.0.0.1:{port}")
    assert res.returncode == 0, res.stderr
    (link,) = [line for line in res.stdout.splitlines() if line.startswith("http")]
    assert re.fullmatch(rf"http://127\.0\.0\.1:{port}/invite/[\w-]{{43}}", link)
    res = capeval("annotators", "add", "Grace", "--password", "--quota", "2", "--db", str(annotation.db), stdin="long enough pw\n")
    assert res.returncode == 0 and "signs in with their name and password" in res.stdout, res.stderr
    res = capeval("annotators", "add", "Ada", "--db", str(annotation.db))
    assert res.returncode == 2 and "annotator 'Ada' already exists" in res.stderr and "annotators invite" in res.stderr
    proc = start_annotate(annotation, port, "--admin-token", "adm1n-token")
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as c:
            assert c.post("/login", data={"name": "Ada"}).status_code == 403  # a name alone is nobody
            csrf = follow_invite(c, link)
            for k in range(3):
                page = c.get("/rate").text
                item = item_of(page)
                r = c.post("/rate", data={"csrf": csrf, "item": item, "rating": str(k + 2), "explanation": f"because {k}"})
                assert r.status_code == 303
            r = c.post("/rate", data={"csrf": csrf, "item": item, "rating": "9", "explanation": "x"})
            assert r.status_code == 409  # already answered, and a clear page rather than a crash
        with httpx.Client(base_url=base, timeout=10) as c:
            page = c.get("/").text
            assert c.post("/login", data={"csrf": csrf_of(page), "name": "Grace", "password": "long enough pw"}).status_code == 303
            assert "Welcome, Grace" in c.get("/").text
        admin = httpx.get(base + "/admin", headers={"Authorization": "Bearer adm1n-token"})
        assert admin.status_code == 200 and re.search(r"<td>Ada</td><td>invite</td><td class=\"num\">default</td>\s*<td class=\"num\">3</td>", admin.text)
    finally:
        out, err = stop(proc)
    assert "32 responses to rate and 30 battles from 3 run(s)" in out, err
    assert "listening on 127.0.0.1 only: other machines cannot connect" in out
    assert f"Uvicorn running on http://127.0.0.1:{port}" in err
    assert "2 annotator(s) can sign in" in out and "adm1n-token" not in out  # a token given is not echoed
    listed = capeval("annotators", "list", "--db", str(annotation.db))
    assert re.search(r"Ada\s+│\s+invite\s+│\s+default\s+│\s+3\s+│\s+0", listed.stdout), listed.stdout
    assert re.search(r"Grace\s+│\s+password\s+│\s+2\s+│\s+0\s+│\s+0", listed.stdout), listed.stdout

    res = capeval("export-ratings", "--db", str(annotation.db), "--out", str(tmp_path / "ratings.csv"))
    assert res.returncode == 0, res.stderr
    with open(tmp_path / "ratings.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(float(r["human_score"]), r["explanation"], r["annotator"]) for r in rows] == [
        (2.0, "because 0", "Ada"), (3.0, "because 1", "Ada"), (4.0, "because 2", "Ada")]
    assert all(r["prompt"].startswith(("What is", "Name a", "Spell")) and r["response"] for r in rows)
    assert all(annotation.model_of_text[r["response"]] == r["model"] for r in rows)


def test_fifty_annotators_voting_at_once_lose_and_duplicate_nothing(annotation: AnnotationFixture) -> None:
    """50 people, each with their own HTTP client on its own thread, released together against one real
    `capeval annotate` process: 3 ratings (the first double-clicked) and 2 votes each, every one stored exactly once."""
    n_people, n_ratings, n_votes = 50, 3, 2
    with Store(annotation.db) as store:
        links = {f"annotator-{i:02d}": add_annotator(store, f"annotator-{i:02d}")[1] for i in range(n_people)}
    port = free_port()
    proc = start_annotate(annotation, port, "--rate-limit", "1000")
    base = f"http://127.0.0.1:{port}"
    start = threading.Barrier(n_people)
    sent: dict[str, list[tuple]] = {}
    failures: list[str] = []

    def annotate_as(name: str) -> None:
        try:
            with httpx.Client(base_url=base, timeout=120) as c:
                csrf = follow_invite(c, f"{base}/invite/{links[name]}")
                start.wait(timeout=300)
                mine = []
                for k in range(n_ratings):
                    rating, why = 1 + (len(name) + k) % 5, f"{name} rating {k}"
                    form = {"csrf": csrf, "item": item_of(c.get("/rate").text), "rating": str(rating), "explanation": why}
                    if k == 0:  # a double click: the same form sent twice at once is stored once
                        with ThreadPoolExecutor(2) as pool:
                            codes = sorted(pool.map(lambda f: c.post("/rate", data=f).status_code, [form, form]))
                        assert codes == [303, 409], codes
                    else:
                        r = c.post("/rate", data=form)
                        assert r.status_code == 303, r.text
                    mine.append(("rating", rating, why))
                for k in range(n_votes):
                    choice = ("A", "B", "tie")[k % 3]
                    r = c.post("/battle", data={"csrf": csrf, "item": item_of(c.get("/battle").text), "choice": choice, "explanation": f"{name} vote {k}"})
                    assert r.status_code == 200, r.text
                    mine.append(("vote", choice, f"{name} vote {k}"))
                sent[name] = mine
        except Exception as e:  # noqa: BLE001 (any failure is reported below with the annotator's name)
            failures.append(f"{name}: {e!r}")

    threads = [threading.Thread(target=annotate_as, args=(name,)) for name in links]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
    finally:
        stop(proc)
    assert not failures, failures[:3]
    assert len(sent) == n_people

    con = sqlite3.connect(annotation.db)
    try:
        ratings = con.execute(
            "SELECT a.name, h.run_id, h.task, h.sample_id, h.rating, h.explanation FROM human_ratings h JOIN annotators a USING (annotator_id)"
        ).fetchall()
        votes = con.execute(
            "SELECT a.name, v.prompt_id, v.run_a, v.run_b, v.winner, v.explanation FROM pairwise_votes v JOIN annotators a USING (annotator_id)"
        ).fetchall()
    finally:
        con.close()
    assert len(ratings) == n_people * n_ratings and len(votes) == n_people * n_votes
    # nobody rated one response, or voted in one battle, twice
    assert len({(name, run, task, sid) for name, run, task, sid, _, _ in ratings}) == len(ratings)
    assert len({(name, prompt, frozenset((a, b))) for name, prompt, a, b, _, _ in votes}) == len(votes)
    # and every answer sent is stored as sent, under the name that sent it
    winner = {"A": "model_a", "B": "model_b", "tie": "tie"}
    stored = sorted([(n, "rating", int(r), why) for n, _, _, _, r, why in ratings] + [(n, "vote", w, why) for n, _, _, _, w, why in votes])
    expected = sorted((n, kind, v if kind == "rating" else winner[v], why) for n, answers in sent.items() for kind, v, why in answers)
    assert stored == expected


def test_annotate_and_export_say_what_is_wrong(annotation: AnnotationFixture, tmp_path) -> None:
    res = capeval("annotate", "--run", "nope", "--db", str(annotation.db))
    assert res.returncode == 2 and "no run 'nope'" in res.stderr and "recent runs" in res.stderr
    res = capeval("annotate", "--run", "x", "--db", str(tmp_path / "missing.db"))
    assert res.returncode == 2 and "database not found" in res.stderr
    res = capeval("export-ratings", "--db", str(annotation.db), "--out", str(tmp_path / "r.csv"))
    assert res.returncode == 2 and "no human ratings" in res.stderr
    res = capeval("annotators", "add", "Ada", "--password", "--db", str(annotation.db), stdin="short\n")
    assert res.returncode == 2 and "shorter than 8 characters" in res.stderr
    res = capeval("annotators", "invite", "Nobody", "--db", str(annotation.db))
    assert res.returncode == 2 and "no annotator 'Nobody'" in res.stderr
    res = capeval("annotate", "--run", "x", "--db", str(annotation.db), "--session-hours", "0")
    assert res.returncode == 2 and "would end every session at once" in res.stderr
