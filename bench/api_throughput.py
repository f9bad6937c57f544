"""Throughput of capeval's request scheduler against a latency-bound OpenAI-compatible server.

The server (a separate process, a minimal ASGI app under uvicorn) answers every /v1/completions
call after an exponentially distributed delay of mean `--mean` seconds; with `--stragglers P` a
fraction P of the calls are stragglers whose delay has a mean `--straggler-factor` times longer.
The client is capeval's own path: `engine.execute` with the `openai` backend, writing every
answer to a real store file. With `--concurrency C` calls kept in flight, no scheduler can answer
more than C / (mean delay) calls per second; the script prints the achieved calls/s against that
bound, with the mean delay the server actually drew in this run.

Three ratios are printed: `overall` is calls / wall time of the whole run against the bound,
which includes the ramp-down at the end (the last calls, stragglers among them, finish one by one
while fewer than C remain); `steady` counts the calls finished between the 10th and 90th
percentile of completion times over that span, which is what the scheduler controls; and
`perfect scheduler` is the wall time a zero-overhead scheduler would need for the very delays the
server drew, in the same order (its ramp-down included), divided by the achieved wall time.
The target is >= 0.9.

    python bench/api_throughput.py                                  # C = 32 and 128, 0% and 10% stragglers
    python bench/api_throughput.py --concurrency 32 --mean 0.5 --calls-per-slot 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import socket
import tempfile
import time
from pathlib import Path
from typing import Any


# ---- the latency-bound server ---------------------------------------------------------------
def _serve(port: int, mean: float, stragglers: float, factor: float, seed: int, ready: Any) -> None:
    import uvicorn

    rng = random.Random(seed)
    drawn: list[float] = []
    cpu = [time.process_time()]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/stats":
            now = time.process_time()
            out = json.dumps({"n": len(drawn), "mean": sum(drawn) / len(drawn) if drawn else 0.0, "cpu_s": now - cpu[0],
                              "delays": drawn}).encode()
            drawn.clear()
            cpu[0] = now
        else:
            delay = rng.expovariate(1.0 / (mean * (factor if rng.random() < stragglers else 1.0)))
            drawn.append(delay)
            await asyncio.sleep(delay)
            out = json.dumps({
                "id": "cmpl-bench", "object": "text_completion", "model": "bench",
                "choices": [{"index": 0, "text": " ok", "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9},
            }).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off", backlog=4096)
    server = uvicorn.Server(config)
    ready.set()
    server.run()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_stats(url: str) -> dict[str, float]:
    import httpx

    return httpx.post(url.replace("/v1", "") + "/stats", content=b"{}", timeout=30).json()


# ---- one measurement --------------------------------------------------------------------------
class _Timeline:
    """A stand-in for engine.Progress that records when each answer arrived."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def track(self, description: str, total: int) -> Any:
        def advance(n: int) -> None:
            now = time.monotonic()
            self.times.extend([now] * n)

        return advance


def measure(url: str, concurrency: int, n_calls: int, store_dir: Path) -> dict[str, float]:
    from capeval.engine import execute
    from capeval.models.openai_api import OpenAIModel
    from capeval.store import Store
    from capeval.types import GenerationParams, Request

    model = OpenAIModel("bench", base_url=url, concurrency=concurrency, timeout=120.0, max_retries=2)
    requests = [Request("generate", f"call {i} of a throughput run {time.time()}", params=GenerationParams(max_tokens=1))
                for i in range(n_calls)]
    timeline = _Timeline()
    _server_stats(url)  # forget earlier draws
    with Store(store_dir / f"bench-{concurrency}-{time.time_ns()}.db") as store:
        cpu = time.process_time()
        start = time.monotonic()
        _, stats = execute(model, requests, store, progress=timeline)  # type: ignore[arg-type]
        wall = time.monotonic() - start
        cpu = time.process_time() - cpu
        stored = store.query("SELECT COUNT(*) AS n FROM model_calls")[0]["n"]
    drawn = _server_stats(url)
    assert stats.failed == 0 and stored == n_calls, (stats, stored)
    times = sorted(t - start for t in timeline.times)
    lo, hi = times[int(0.1 * len(times))], times[int(0.9 * len(times))]
    steady = (int(0.9 * len(times)) - int(0.1 * len(times))) / (hi - lo)
    bound = concurrency / drawn["mean"]
    ideal = ideal_wall(drawn["delays"], concurrency)
    return {"calls": n_calls, "wall_s": wall, "mean_latency_s": drawn["mean"], "bound": bound,
            "overall": n_calls / wall, "steady": steady, "ideal_wall_s": ideal,
            "client_cpu_s": cpu, "server_cpu_s": drawn["cpu_s"]}


def ideal_wall(delays: list[float], concurrency: int) -> float:
    """Wall time of a perfect scheduler (no overhead) given the same delays in the same order:
    each call starts the moment one of the `concurrency` slots frees. It includes the ramp-down
    that no scheduler can avoid (the last calls, stragglers among them, finish one by one)."""
    import heapq

    slots = [0.0] * concurrency
    for d in delays:
        heapq.heappush(slots, heapq.heappop(slots) + d)
    return max(slots)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", default="32,128", help="comma-separated concurrencies")
    ap.add_argument("--stragglers", default="0,0.1", help="comma-separated straggler fractions")
    ap.add_argument("--mean", type=float, default=0.5, help="mean delay of a normal call, seconds")
    ap.add_argument("--straggler-factor", type=float, default=10.0, help="a straggler's mean delay / --mean")
    ap.add_argument("--calls-per-slot", type=int, default=30, help="calls per unit of concurrency")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    rows = []
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        for frac in [float(x) for x in args.stragglers.split(",")]:
            port = _free_port()
            ready = ctx.Event()
            server = ctx.Process(target=_serve, args=(port, args.mean, frac, args.straggler_factor, args.seed, ready), daemon=True)
            server.start()
            ready.wait(60)
            url = f"http://127.0.0.1:{port}/v1"
            for _ in range(200):  # until uvicorn listens
                try:
                    _server_stats(url)
                    break
                except Exception:  # noqa: BLE001 - not listening yet
                    time.sleep(0.1)
            try:
                for c in [int(x) for x in args.concurrency.split(",")]:
                    r = measure(url, c, c * args.calls_per_slot, Path(tmp))
                    r.update(concurrency=c, stragglers=frac)
                    rows.append(r)
                    print(
                        f"concurrency {c:4d}  stragglers {frac:4.0%}  calls {r['calls']:5d}  wall {r['wall_s']:6.1f}s  "
                        f"mean latency {r['mean_latency_s']:.3f}s  bound {r['bound']:6.1f}/s  "
                        f"achieved {r['overall']:6.1f}/s overall ({r['overall'] / r['bound']:.2f} of bound), "
                        f"{r['steady']:6.1f}/s steady ({r['steady'] / r['bound']:.2f}); "
                        f"perfect scheduler {r['ideal_wall_s']:.1f}s ({r['ideal_wall_s'] / r['wall_s']:.2f} of it); "
                        f"CPU client {r['client_cpu_s']:.1f}s server {r['server_cpu_s']:.1f}s",
                        flush=True,
                    )
            finally:
                server.terminate()
                server.join(10)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
