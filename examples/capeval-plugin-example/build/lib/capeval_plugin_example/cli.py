"""The `capeval example-sum` command, added through a `capeval.commands` entry point."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("example-sum")
    def example_sum(a: int, b: int) -> None:
        """Print A + B (a command from capeval-plugin-example)."""
        typer.echo(str(a + b))
