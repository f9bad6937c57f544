"""capeval's exception hierarchy: every error a user can see carries a message they can act on."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CapevalError(Exception):
    """Root of capeval's errors. `hint` is an optional second line telling the user what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{msg}\n  hint: {self.hint}" if self.hint else msg


def did_you_mean(key: str, accepted: Iterable[str], owner: str) -> str:
    """A hint for an unknown option: the closest accepted key, then all of them ("the hf backend takes: ...")."""
    known = sorted(accepted)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return (f"did you mean '{close[0]}'? " if close else "") + f"{owner} takes: {', '.join(known)}"


# the command that lists each kind of name (a kind without one gets the known names in the hint)
LISTING_COMMANDS = {
    "task": "capeval tasks",
    "model": "capeval models",
    "model backend": "capeval models",
    "judge recipe": "capeval judge-recipes",
}


class UnknownNameError(CapevalError):
    """A model, task, recipe or metric name that is not registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known = list(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        if close:
            hint = f"did you mean {', '.join(close)}?"
        elif kind in LISTING_COMMANDS:
            hint = f"run `{LISTING_COMMANDS[kind]}` to list them"
        else:
            hint = f"known: {', '.join(sorted(known))}"
        super().__init__(f"unknown {kind} '{name}'", hint)
        self.name = name
        self.close_matches = close


class DatasetError(CapevalError):
    """A dataset that cannot be loaded or whose rows cannot be read."""


class TaskSpecError(CapevalError):
    """An invalid task specification (YAML file, field mapping)."""


class StoreError(CapevalError):
    """A store file (--db) that cannot be opened or written: wrong kind of file, read-only, too new."""


class ModelError(CapevalError):
    """A model backend that cannot load or answer."""


class UnsupportedRequestError(ModelError):
    """A backend asked for something it cannot do (e.g. log-likelihood on a chat-only server)."""


class ServerError(ModelError):
    """A remote model server that kept failing after all retries."""


class MissingExtraError(CapevalError):
    """An optional dependency (extra) is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this feature needs the '{package}' package", f"pip install 'capeval[{extra}]'"
        )
