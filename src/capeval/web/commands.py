"""CLI commands of the annotators' web app: `capeval annotate` and `capeval export-ratings`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from capeval.errors import CapevalError

console = Console()
DB_HELP = "SQLite store (default: $CAPEVAL_DB or the user data dir)."


def _open(db: Path | None) -> Any:
    from capeval.analysis.tables import open_store
    from capeval.store.db import default_db_path

    return open_store(db if db is not None else default_db_path())


def annotate(
    run: list[str] = typer.Option(..., "--run", help="Run whose responses people rate (repeat it; runs of different models make battles)."),
    db: Path | None = typer.Option(None, help=DB_HELP + " Ratings and votes are written to it."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 to let other machines in)."),
    port: int = typer.Option(8000),
    bootstrap: int = typer.Option(500, help="Bootstrap resamples for the leaderboard's 95% CIs."),
) -> None:
    """Web app for people: rate responses 1-5 with an explanation, vote in blind A/B battles, see the leaderboard."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise CapevalError(f"`capeval annotate` needs the '{e.name}' package", "pip install 'capeval[web]'") from None
    from capeval.web.app import serve
    from capeval.web.items import ItemPool

    with _open(db) as store:
        pool = ItemPool.load(store, run)
        console.print(
            f"{len(pool.ratings)} responses to rate and {len(pool.battles)} battles from {len(pool.run_ids)} run(s); "
            f"open http://{host}:{port}/ (Ctrl-C stops)"
        )
        if not pool.battles:
            console.print("[yellow]no battles: pass runs of at least two different models that answered the same samples[/]")
        serve(store, run, host=host, port=port, n_bootstrap=bootstrap)


def export_ratings(
    out: Path = typer.Option(..., "--out", help="CSV file to write (judge-check's prompt,response,human_score format)."),
    run: list[str] | None = typer.Option(None, "--run", help="Only ratings of these runs (default: all)."),
    db: Path | None = typer.Option(None, help=DB_HELP),
) -> None:
    """People's ratings from the web app as a CSV for `capeval judge-check --data FILE`."""
    from capeval.web.export import write_ratings_csv

    with _open(db) as store:
        n = write_ratings_csv(store, out, run)
    console.print(f"wrote {n} ratings to {out}")


def register(app: typer.Typer) -> None:
    app.command("annotate")(annotate)
    app.command("export-ratings")(export_ratings)
