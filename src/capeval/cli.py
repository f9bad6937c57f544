"""The `capeval` command line: run, tasks, models, runs, and the commands each area registers."""

from __future__ import annotations

import importlib
import os
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from capeval import plugins
from capeval.errors import CapevalError
from capeval.interrupts import Interrupted

app = typer.Typer(add_completion=False, no_args_is_help=False, help="Evaluate LLMs: benchmarks, judges, analysis.")
console = Console()
err_console = Console(stderr=True)
_debug = False

# Areas register their own sub-commands through `capeval.commands` entry points (capeval's own are
# listed in capeval.plugins.BUILTIN): each names `register(app: typer.Typer) -> None`, or a
# typer.Typer added as a command group under the entry point's name.
COMMANDS: plugins.Registry[str] = plugins.Registry("command", "capeval.commands")


def fail(message: str, hint: str | None = None) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    if hint:
        err_console.print(f"  [dim]hint:[/] {hint}")
    raise typer.Exit(2)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks.")) -> None:
    global _debug
    _debug = debug or os.environ.get("CAPEVAL_DEBUG") == "1"


def _command_names() -> list[str]:
    names = [c.name or (c.callback.__name__.lower().replace("_", "-") if c.callback else "") for c in app.registered_commands]
    return names + [g.name or (g.typer_instance.info.name or "" if g.typer_instance else "") for g in app.registered_groups]


def _register_all() -> None:
    if COMMANDS:
        return
    for ep, origin in plugins.discover("capeval.commands"):
        before = Counter(_command_names())
        obj = plugins.load(ep, origin)
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=ep.name)
        elif callable(obj):
            obj(app)
        else:
            raise plugins.PluginLoadError(f"{origin}: {ep.value} is neither register(app) nor a typer.Typer")
        for name, count in (Counter(_command_names()) - before).items():
            if count > 1:
                raise plugins.PluginConflictError(f"command '{name}' is registered twice by {origin}")
            COMMANDS.add(name, name, origin)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        _register_all()  # a plugin command that cannot load (or clashes) is an error line, not a traceback
        # With standalone_mode=False click returns what a command's typer.Exit carried (and 130
        # for Ctrl-C) instead of exiting: that value is the process's exit code.
        code = app(args=args, standalone_mode=False)
    except Interrupted as e:
        sys.exit(e.exit_code)
    except CapevalError as e:
        if _debug or "--debug" in args:
            raise
        err_console.print(f"[bold red]error:[/] {e.args[0] if e.args else e}")
        if e.hint:
            err_console.print(f"  [dim]hint:[/] {e.hint}")
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted; finished model calls are saved and a re-run resumes from them")
        sys.exit(130)
    except Exception as e:  # click usage errors and the like
        # typer >= 0.2x raises its vendored click's exceptions, older typer plain click's: both show()
        show, code = getattr(e, "show", None), getattr(e, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            sys.exit(code)
        if _debug or "--debug" in args:
            raise
        err_console.print(f"[bold red]error:[/] {type(e).__name__}: {e}")
        err_console.print("  [dim]hint:[/] re-run with --debug for the traceback")
        sys.exit(1)
    if isinstance(code, int) and code:
        if code == 130:
            err_console.print("aborted; finished model calls are saved and a re-run resumes from them")
        sys.exit(code)


def lazy(module: str, attr: str) -> Callable[..., Any]:
    def call(*a: Any, **k: Any) -> Any:
        return getattr(importlib.import_module(module), attr)(*a, **k)

    return call
