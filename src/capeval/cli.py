"""The `capeval` command line: run, tasks, models, runs, and the commands each area registers."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from capeval.errors import CapevalError

app = typer.Typer(add_completion=False, no_args_is_help=False, help="Evaluate LLMs: benchmarks, judges, analysis.")
console = Console()
err_console = Console(stderr=True)
_debug = False

# Areas register their own sub-commands: each module has `register(app: typer.Typer) -> None`.
COMMAND_MODULES = [
    "capeval.commands_core",
    "capeval.models.commands",
    "capeval.analysis.commands",
    "capeval.report.commands",
    "capeval.judge.bench_commands",
    "capeval.judge.commands",
    "capeval.judge.alter_commands",
    "capeval.web.commands",
    "capeval.interpret.commands",
]


def fail(message: str, hint: str | None = None) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    if hint:
        err_console.print(f"  [dim]hint:[/] {hint}")
    raise typer.Exit(2)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks.")) -> None:
    global _debug
    _debug = debug or os.environ.get("CAPEVAL_DEBUG") == "1"


def _register_all() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


def main(argv: list[str] | None = None) -> None:
    _register_all()
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, standalone_mode=False)
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


def lazy(module: str, attr: str) -> Callable[..., Any]:
    def call(*a: Any, **k: Any) -> Any:
        return getattr(importlib.import_module(module), attr)(*a, **k)

    return call
