"""`capeval annotate` and `capeval export-ratings` as a user runs them: a real server process on 127.0.0.1."""

from __future__ import annotations

import csv
import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
from web_fixtures import AnnotationFixture


def capeval(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "capeval", *args], capture_output=True, text=True, timeout=300, env=env, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_annotate_serves_the_runs_and_export_writes_the_ratings(annotation: AnnotationFixture, tmp_path) -> None:
    port = free_port()
    runs = [x for r in annotation.run_ids.values() for x in ("--run", r[:-1])]
    proc = subprocess.Popen(
        [sys.executable, "-m", "capeval", "annotate", *runs, "--db", str(annotation.db), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(base + "/", timeout=2).status_code == 200
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "capeval annotate did not start"
                time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=10) as c:
            assert c.post("/login", data={"name": "Ada"}).status_code == 303
            for k in range(3):
                page = c.get("/rate").text
                item = re.search(r'name="item" value="([^"]+)"', page).group(1)
                assert c.post("/rate", data={"item": item, "rating": str(k + 2), "explanation": f"because {k}"}).status_code == 303
            r = c.post("/rate", data={"item": item, "rating": "9", "explanation": "x"})
            assert r.status_code == 409  # already answered, and a clear page rather than a crash
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert "32 responses to rate and 30 battles from 3 run(s)" in out, err

    res = capeval("export-ratings", "--db", str(annotation.db), "--out", str(tmp_path / "ratings.csv"))
    assert res.returncode == 0, res.stderr
    with open(tmp_path / "ratings.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(float(r["human_score"]), r["explanation"], r["annotator"]) for r in rows] == [
        (2.0, "because 0", "Ada"), (3.0, "because 1", "Ada"), (4.0, "because 2", "Ada")]
    assert all(r["prompt"].startswith(("What is", "Name a", "Spell")) and r["response"] for r in rows)
    assert all(annotation.model_of_text[r["response"]] == r["model"] for r in rows)


def test_annotate_and_export_say_what_is_wrong(annotation: AnnotationFixture, tmp_path) -> None:
    res = capeval("annotate", "--run", "nope", "--db", str(annotation.db))
    assert res.returncode == 2 and "no run 'nope'" in res.stderr and "recent runs" in res.stderr
    res = capeval("annotate", "--run", "x", "--db", str(tmp_path / "missing.db"))
    assert res.returncode == 2 and "database not found" in res.stderr
    res = capeval("export-ratings", "--db", str(annotation.db), "--out", str(tmp_path / "r.csv"))
    assert res.returncode == 2 and "no human ratings" in res.stderr
