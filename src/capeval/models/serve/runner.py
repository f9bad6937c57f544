"""The model runner of `capeval serve-model`: one model call at a time, waiting generations batched."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from capeval.errors import CapevalError
from capeval.models.base import Model
from capeval.models.serve.faults import ServerStats
from capeval.types import Request, Response

Gone = Callable[[], Awaitable[bool]]
_Waiter = tuple[list[Request], "asyncio.Future[list[Response]]", "Gone | None"]


class ClientGone(Exception):
    """The client disconnected before its model call started: nothing to answer."""


class ModelRunner:
    """Runs model calls one at a time (a model is not thread-safe, and one call already uses
    every core), in a worker thread so that the event loop keeps answering meanwhile.

    With `max_batch` > 1, generation requests that arrive while the model is busy are answered
    together by one `model.generate` call (up to `max_batch` prompts), as a local run would
    batch them; a batch pads prompts to one length, which can change greedy outputs in rare
    near-ties, so `max_batch=1` gives exactly the answers of one-at-a-time calls."""

    def __init__(self, model: Model, max_batch: int = 1, stats: ServerStats | None = None) -> None:
        if max_batch < 1:
            raise CapevalError(f"max_batch must be at least 1, got {max_batch}")
        self.model = model
        self.max_batch = max_batch
        self.stats = stats or ServerStats()
        self._lock = asyncio.Lock()
        self._waiting: list[_Waiter] = []

    async def run(self, fn: Any, *args: Any, gone: Gone | None = None) -> Any:
        """Call `fn(*args)` in a worker thread once no other model call is running, unless the
        client has gone meanwhile (`gone()`: it timed out and will retry, so the work is wasted)."""
        async with self._lock:
            if gone is not None and await gone():
                self.stats.skipped += 1
                raise ClientGone()
            self.stats.model_calls += 1
            return await asyncio.to_thread(fn, *args)

    async def generate(self, requests: list[Request], gone: Gone | None = None) -> list[Response]:
        future: asyncio.Future[list[Response]] = asyncio.get_running_loop().create_future()
        self._waiting.append((requests, future, gone))
        async with self._lock:
            if not future.done():  # an earlier holder of the lock may have answered us already
                mine = next(i for i, (_, fut, _) in enumerate(self._waiting) if fut is future)
                batch = [self._waiting.pop(mine)]
                size = len(requests)
                while self._waiting and size + len(self._waiting[0][0]) <= self.max_batch:
                    batch.append(self._waiting.pop(0))
                    size += len(batch[-1][0])
                live = []
                for item in batch:
                    if item[2] is not None and await item[2]():
                        self.stats.skipped += 1
                        item[1].set_exception(ClientGone())
                    else:
                        live.append(item)
                if live:
                    await self._generate_batch(live)
        return await future

    async def _generate_batch(self, batch: list[_Waiter]) -> None:
        self.stats.model_calls += 1
        flat = [r for reqs, _, _ in batch for r in reqs]
        try:
            answers = await asyncio.to_thread(self.model.generate, flat)
        except Exception as e:  # noqa: BLE001 - every waiting request must hear of the failure
            for _, fut, _ in batch:
                fut.set_exception(e)
            return
        pos = 0
        for reqs, fut, _ in batch:
            fut.set_result(list(answers[pos : pos + len(reqs)]))
            pos += len(reqs)


