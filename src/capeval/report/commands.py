"""`capeval report RUN... --out report.html`: the self-contained HTML report of stored runs."""

from __future__ import annotations

from pathlib import Path

import typer

from capeval.report.builder import DEFAULT_MAX_SAMPLES, ReportOptions


def report(
    runs: list[str] = typer.Argument(..., help="Run ids (or unique prefixes) to report; see `capeval runs list`."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="Where to write the HTML file."),
    db: Path | None = typer.Option(None, "--db", help="SQLite store (default: $CAPEVAL_DB or the user data dir)."),
    title: str = typer.Option("capeval report", "--title", help="Page title."),
    max_samples: int = typer.Option(
        DEFAULT_MAX_SAMPLES, "--max-samples", help="Samples per run and task included for audit (0: all of them)."
    ),
    arena_bootstrap: int = typer.Option(1000, "--arena-bootstrap", help="Bootstrap resamples for arena rating CIs."),
    threshold: float | None = typer.Option(
        None, "--threshold", help="Weakest link: points two capabilities must differ by (default 3)."
    ),
    gap: list[str] | None = typer.Option(
        None, "--gap", help="PUBLIC_RUN:PRIVATE_RUN: contamination split gap between two stored runs; repeatable."
    ),
    contamination: list[Path] | None = typer.Option(
        None, "--contamination", help="JSON written by `capeval contamination gap|ngram|memorisation --json`; repeatable."
    ),
    judge_check: list[Path] | None = typer.Option(
        None, "--judge-check", help="JSON written by `capeval judge-check --json` (judge vs human ratings); repeatable."
    ),
    battles: list[Path] | None = typer.Option(
        None, "--battles", help="Battles CSV (model_a, model_b, winner) for the arena, beside the store's votes; repeatable."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of every bootstrap in the report."),
) -> None:
    """Write one HTML file (opens offline) with headline numbers, tables, charts and every sample."""
    from capeval.analysis.tables import open_store
    from capeval.cli import console, err_console
    from capeval.report.builder import build_report
    from capeval.store import default_db_path

    options = ReportOptions(
        title=title,
        max_samples_per_task=max_samples or None,
        arena_bootstrap=arena_bootstrap,
        seed=seed,
        weakest_link_threshold=threshold,
        gap_pairs=tuple(gap or ()),
        contamination_files=tuple(contamination or ()),
        judge_check_files=tuple(judge_check or ()),
        battle_files=tuple(battles or ()),
    )
    with open_store(db if db is not None else default_db_path()) as store, console.status(
        f"building the report of {len(runs)} run(s): bootstrap CIs, paired tests, arena fits..."
    ):
        path = build_report(store, runs, out, options)
        from capeval.analysis.tables import incomplete_note

        for rid in runs:
            row = store.run(rid)
            note = incomplete_note(store, row) if row is not None else None
            if note:
                err_console.print(f"[bold red]warning:[/] {note}")
    console.print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB); open it in any browser, no network needed")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
