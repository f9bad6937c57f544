"""Graceful SIGINT / SIGTERM for long runs: the first signal stops new work, a second exits at once.

`capeval run` installs `handle_signals()` around a run. The first SIGINT or SIGTERM only sets
`requested`; the engine sees it between model calls (`check()`), stops sending, saves every answer
it holds and raises `Interrupted`, which the command line turns into exit code 128 + signal
(130 for Ctrl-C, 143 for SIGTERM). Inside a `cancellable()` block (a local backend's batch, which
can take seconds) the first signal raises `Interrupted` at once, since nothing in it is answered
yet. A second signal ends the process with `os._exit`: SQLite commits are atomic, so the store
keeps every committed answer and discards only a transaction left open.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

# Exit codes of `capeval run` besides 0 (complete) and those of errors (1, 2).
EXIT_INCOMPLETE = 3


class Interrupted(BaseException):
    """The run was stopped by a signal. A BaseException, like KeyboardInterrupt, so that code
    catching Exception to answer a failed request with an error does not swallow it."""

    def __init__(self, signum: int, stored: int | None = None, total: int | None = None, run_id: str | None = None) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.stored = stored
        self.total = total
        self.run_id = run_id

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _State:
    requested: int | None = None  # the first signal received
    raise_now: bool = False  # inside cancellable(): raise from the handler
    installed: bool = False


_state = _State()


def requested() -> int | None:
    """The signal that asked the run to stop, or None."""
    return _state.requested


def check() -> None:
    """Raise Interrupted if a stop was asked for."""
    if _state.requested is not None:
        raise Interrupted(_state.requested)


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state.requested is not None:
        os.write(2, f"\n{signal.Signals(signum).name} again: exiting now; committed answers are kept\n".encode())
        os._exit(128 + signum)
    _state.requested = signum
    os.write(2, b"\nstopping: no new model calls; saving the answered ones (signal again to exit at once)\n")
    if _state.raise_now:
        _state.raise_now = False
        raise Interrupted(signum)


@contextmanager
def handle_signals() -> Iterator[None]:
    """Install the two-stage SIGINT / SIGTERM handlers for the block (main thread only; elsewhere
    the block runs with the process's handlers unchanged)."""
    if threading.current_thread() is not threading.main_thread() or _state.installed:
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    _state.requested, _state.raise_now, _state.installed = None, False, True
    for s in previous:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _state.requested, _state.raise_now, _state.installed = None, False, False


@contextmanager
def cancellable() -> Iterator[None]:
    """A block that holds no answers yet (a local batch): a signal may stop it at once."""
    check()
    before = _state.raise_now
    _state.raise_now = _state.installed
    try:
        yield
    finally:
        _state.raise_now = before
