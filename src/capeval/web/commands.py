"""CLI commands of the annotators' web app: `capeval annotate`, `capeval annotators ...` and `capeval export-ratings`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from capeval.errors import CapevalError

console = Console()
DB_HELP = "SQLite store (default: $CAPEVAL_DB or the user data dir)."


def _store(db: Path | None) -> Any:
    """The store, created if missing (annotators are added before anything is run into it)."""
    from capeval.store import Store
    from capeval.store.db import default_db_path

    return Store(db if db is not None else default_db_path())


def _open(db: Path | None) -> Any:
    from capeval.analysis.tables import open_store
    from capeval.store.db import default_db_path

    return open_store(db if db is not None else default_db_path())


def annotate(
    run: list[str] = typer.Option(..., "--run", help="Run whose responses people rate (repeat it; runs of different models make battles)."),
    db: Path | None = typer.Option(None, help=DB_HELP + " Ratings and votes are written to it."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on: 127.0.0.1 (this machine only) unless told otherwise; 0.0.0.0 lets other machines in."),
    port: int = typer.Option(8000),
    bootstrap: int = typer.Option(500, help="Bootstrap resamples for the leaderboard's 95% CIs."),
    admin_token: str | None = typer.Option(
        None, "--admin-token", envvar="CAPEVAL_ADMIN_TOKEN", help="Token of the admin page (default: a new random one, printed at start)."
    ),
    rate_limit: int = typer.Option(30, "--rate-limit", help="Answers per minute one annotator may send."),
    quota: int | None = typer.Option(None, "--quota", help="Most answers (ratings + votes) per annotator, unless `annotators add --quota` set their own."),
    session_hours: float = typer.Option(12.0, "--session-hours", help="How long a sign-in lasts."),
    secure_cookies: bool = typer.Option(
        False, "--secure-cookies",
        help="Mark cookies Secure (sent over HTTPS only) on every request: for TLS ended by a proxy on another machine. "
        "Requests that arrive over HTTPS (or through a proxy on this machine that sends X-Forwarded-Proto) get them anyway.",
    ),
) -> None:
    """Web app for people: rate responses 1-5 with an explanation, vote in blind A/B battles, see the leaderboard.

    Annotators sign in with the invite link or password `capeval annotators add NAME` gave them."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise CapevalError(f"`capeval annotate` needs the '{e.name}' package", "pip install 'capeval[web]'") from None
    import secrets

    from capeval.web.app import Limits, serve
    from capeval.web.auth import annotator_counts
    from capeval.web.items import ItemPool, WebError

    if session_hours <= 0:
        raise WebError(f"--session-hours {session_hours:g} would end every session at once", "give a positive number of hours")
    if quota is not None and quota < 0:
        raise WebError(f"--quota {quota} is negative", "give the most answers one annotator may send")
    limits = Limits(rate_limit=rate_limit, quota=quota, session_hours=session_hours, secure_cookies=secure_cookies)
    token = admin_token or secrets.token_urlsafe(24)
    with _open(db) as store:
        pool = ItemPool.load(store, run)
        people = [p for p in annotator_counts(store) if p.sign_in != "none"]
        url = f"http://{host}:{port}"
        console.print(
            f"{len(pool.ratings)} responses to rate and {len(pool.battles)} battles from {len(pool.run_ids)} run(s); "
            f"open {url}/ (Ctrl-C stops)"
        )
        if host in ("127.0.0.1", "localhost", "::1"):
            console.print(f"listening on {host} only: other machines cannot connect (--host 0.0.0.0 lets them in)")
        else:
            console.print(f"[yellow]listening on {host}: other machines on the network can reach this app[/]")
        console.print(
            f"{len(people)} annotator(s) can sign in; add one with `capeval annotators add NAME`. "
            f"Admin page: {url}/admin" + ("" if admin_token else f" with token {token}")
        )
        if not pool.battles:
            console.print("[yellow]no battles: pass runs of at least two different models that answered the same samples[/]")
        serve(store, run, host=host, port=port, n_bootstrap=bootstrap, admin_token=token, limits=limits)


def _read_password() -> str:
    """A password from the terminal (asked twice, not echoed) or, when piped, the first line of stdin."""
    import sys

    if sys.stdin.isatty():
        return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))
    return sys.stdin.readline().rstrip("\r\n")


URL_HELP = "Address of `capeval annotate` as the annotator will open it (the invite link starts with it)."


def annotators_add(
    name: str = typer.Argument(..., help="The annotator's name, as pages and exports show it."),
    password: bool = typer.Option(False, "--password", help="Sign in with a password (asked for; piped: read from stdin) instead of an invite link."),
    quota: int | None = typer.Option(None, "--quota", help="Most answers (ratings + votes) this annotator may give."),
    url: str = typer.Option("http://127.0.0.1:8000", "--url", help=URL_HELP),
    db: Path | None = typer.Option(None, help=DB_HELP),
) -> None:
    """Create an annotator who signs in with an invite link (printed) or a password."""
    from capeval.web.auth import add_annotator

    secret = _read_password() if password else None
    with _store(db) as store:
        annotator, token = add_annotator(store, name, password=secret, quota=quota)
    if token is None:
        console.print(f"annotator '{annotator.name}' signs in with their name and password")
    else:
        console.print(f"invite link for '{annotator.name}' (give it to them only; it is not shown again):")
        print(f"{url.rstrip('/')}/invite/{token}")


def annotators_invite(
    name: str = typer.Argument(..., help="An annotator's name."),
    password: bool = typer.Option(False, "--password", help="Give them a new password instead of a link."),
    url: str = typer.Option("http://127.0.0.1:8000", "--url", help=URL_HELP),
    db: Path | None = typer.Option(None, help=DB_HELP),
) -> None:
    """Give an annotator a new invite link (or password); the old one stops working and their sessions end."""
    from capeval.web.auth import reset_credentials

    secret = _read_password() if password else None
    with _open(db) as store:
        token = reset_credentials(store, name, password=secret)
    if token is None:
        console.print(f"'{name}' now signs in with the new password; their old sessions have ended")
    else:
        console.print(f"new invite link for '{name}' (the old one no longer works):")
        print(f"{url.rstrip('/')}/invite/{token}")


def annotators_quota(
    name: str = typer.Argument(..., help="An annotator's name."),
    quota: int | None = typer.Argument(None, help="Most answers they may give (leave out: the app's --quota)."),
    db: Path | None = typer.Option(None, help=DB_HELP),
) -> None:
    """Set or clear one annotator's quota of answers."""
    from capeval.web.auth import set_quota

    with _open(db) as store:
        set_quota(store, name, quota)
    console.print(f"'{name}': " + (f"at most {quota} answers" if quota is not None else "the app's default quota"))


def annotators_list(db: Path | None = typer.Option(None, help=DB_HELP)) -> None:
    """Annotators with how they sign in, their quota and how many ratings and votes they gave."""
    import time

    from rich.table import Table

    from capeval.web.auth import annotator_counts

    with _open(db) as store:
        people = annotator_counts(store)
    table = Table("name", "signs in with", "quota", "ratings", "votes", "last answer (UTC)")
    for p in people:
        last = time.strftime("%Y-%m-%d %H:%M", time.gmtime(p.last_answer)) if p.last_answer else "-"
        table.add_row(p.name, p.sign_in, "default" if p.quota is None else str(p.quota), str(p.ratings), str(p.votes), last)
    console.print(table)


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
    annotators = typer.Typer(help="People who sign in to `capeval annotate`: add, new invite link, quota, list.", no_args_is_help=True)
    annotators.command("add")(annotators_add)
    annotators.command("invite")(annotators_invite)
    annotators.command("quota")(annotators_quota)
    annotators.command("list")(annotators_list)
    app.add_typer(annotators, name="annotators")
