"""Ctrl-C during a streamed run keeps every answer already received: the engine throws the stop
into the model's stream, which hands over what it holds before it ends."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from capeval import interrupts
from capeval.engine import execute
from capeval.interrupts import Interrupted
from capeval.models import load_model
from capeval.types import GenerationParams, Request, Response


def gen(prompt: str) -> Request:
    return Request("generate", prompt, params=GenerationParams(max_tokens=4))


class HoldingModel:
    """A streaming backend that has received answers 1 and 2 while handing over answer 0 (as a
    concurrent client has), and a stop arrives with answer 0; answer 3 is still in flight."""

    model_id = "holding"

    def __init__(self) -> None:
        self.abandoned: list[int] = []

    def generate(self, requests):  # pragma: no cover - the engine prefers stream
        raise AssertionError("stream expected")

    loglikelihood = generate

    def stream(self, requests):
        held = [(1, Response(text="one")), (2, Response(text="two"))]
        try:
            interrupts._state.requested = signal.SIGINT  # the signal arrives now
            yield 0, Response(text="zero")
            yield from held
            yield 3, Response(text="three")
        except Interrupted:
            self.abandoned.append(3)
            yield from held
            raise


@pytest.fixture
def signals():
    with interrupts.handle_signals():
        yield


def test_answers_received_before_a_stop_are_saved(store, signals):
    model = HoldingModel()
    reqs = [gen(f"q{i}") for i in range(4)]
    with pytest.raises(Interrupted) as stopped:
        execute(model, reqs, store)
    assert model.abandoned == [3]
    keys = [r.key(model.model_id) for r in reqs]
    saved = store.get_calls(set(keys))
    assert {saved[k].text for k in keys if k in saved} == {"zero", "one", "two"}
    assert (stopped.value.stored, stopped.value.total) == (3, 4)


class ClosingOnly:
    """A stream that is no generator: it can only be closed (nothing to drain)."""

    model_id = "closing"

    def __init__(self) -> None:
        self.closed = False
        self.sent = 0

    def __iter__(self):
        return self

    def __next__(self):
        self.sent += 1
        interrupts._state.requested = signal.SIGINT
        return 0, Response(text="zero")

    def close(self):
        self.closed = True

    def stream(self, requests):
        return self

    def generate(self, requests):  # pragma: no cover
        raise AssertionError("stream expected")

    loglikelihood = generate


def test_a_stream_that_is_no_generator_is_closed(store, signals):
    model = ClosingOnly()
    with pytest.raises(Interrupted):
        execute(model, [gen("a"), gen("b")], store)
    assert model.closed and model.sent == 1
    assert store.get_calls({gen("a").key("closing")})[gen("a").key("closing")].text == "zero"


def test_openai_stream_hands_over_answers_received_when_stopped():
    """Six calls answered at once and one the server holds: after the first answer is yielded and
    the client has received the other five, a stop yields those five, then re-raises; the held
    call is abandoned."""
    from scripted_chat import ScriptedChatServer

    release = threading.Event()

    def rule(model, messages):
        text = messages[-1]["content"]
        if text == "hold":
            release.wait(60)
        return f"answer to {text}"

    prompts = [f"p{i}" for i in range(6)] + ["hold"]
    with ScriptedChatServer(rule) as srv:
        try:
            m = load_model("openai:m", base_url=srv.base_url, concurrency=8, timeout=60.0)
            reqs = [gen(p) for p in prompts]
            it = m.stream(reqs)
            first = next(item for item in it if item is not None)
            deadline = time.monotonic() + 60  # liveness only: the five answers arrive in milliseconds
            while m.n_answered < 6 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert m.n_answered == 6
            handed: list[tuple[int, Response]] = []
            with pytest.raises(Interrupted):
                item = it.throw(Interrupted(signal.SIGINT))
                while True:
                    if item is not None:
                        handed.append(item)
                    item = next(it)
        finally:
            release.set()
    got = {i: r.text for i, r in [first, *handed]}
    assert got == {i: f"answer to p{i}" for i in range(6)}
