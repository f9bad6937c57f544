"""`capeval mtbench`: two-turn MT-Bench answers, judged by single grading or pairwise vs a baseline."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer

from capeval.commands_core import CACHE_HELP, MODEL_OPTION_HELP
from capeval.errors import CapevalError


def mtbench(
    model: str = typer.Option(..., "--model", "-m", help="Model under test: bundled name, hf:PATH, openai:NAME(@URL), vllm:PATH."),
    judge: str = typer.Option(..., "--judge", "-j", help="Judge model spec (openai:NAME@URL for a served judge)."),
    mode: str = typer.Option("single", "--mode", help="single: rate each turn 1-10; pairwise: compare with --baseline."),
    baseline: str | None = typer.Option(None, "--baseline", help="Baseline model spec for --mode pairwise."),
    categories: str | None = typer.Option(None, "--categories", help="Comma-separated MT-Bench categories (default: all 8)."),
    limit: int | None = typer.Option(None, "--limit", "-n", help="At most N questions."),
    max_tokens: int = typer.Option(1024, "--max-tokens", help="New tokens per answer (FastChat: 1024)."),
    judge_max_tokens: int | None = typer.Option(None, "--judge-max-tokens", help="The judge's output budget (default: 2048, FastChat's; an edited recipe file's own)."),
    recipe_file: list[Path] = typer.Option(
        [], "--recipe-file", help="Your edited copy of a judge recipe (single, reference_guided, pairwise, reference_guided_pairwise); it replaces the recipe its header names (repeatable)."
    ),
    system: str | None = typer.Option(None, "--system", help="System prompt for the model under test (and the baseline)."),
    fastchat_temperatures: bool = typer.Option(
        False, "--fastchat-temperatures", help="Sample with FastChat's per-category temperatures (writing 0.7, ..., math 0) instead of greedy."
    ),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server URL for --model."),
    concurrency: int | None = typer.Option(None, "--concurrency", "-c", help="Requests in flight (openai backend)."),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", help="Backend batch size for local models."),
    model_option: list[str] = typer.Option([], "--model-option", "-o", help=MODEL_OPTION_HELP + " For --model."),
    judge_option: list[str] = typer.Option([], "--judge-option", help="KEY=VALUE backend option for --judge (repeatable)."),
    baseline_option: list[str] = typer.Option(
        [], "--baseline-option", help="KEY=VALUE backend option for --baseline (repeatable)."
    ),
    db: Path | None = typer.Option(None, "--db", help="SQLite store (default: $CAPEVAL_DB or the user data dir)."),
    cache: str = typer.Option("use", "--cache", help=CACHE_HELP),
    json_out: Path | None = typer.Option(None, "--json", help="Also write results as JSON here."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide progress bars."),
) -> None:
    """MT-Bench on the 80 packaged questions: generate two-turn answers (cached, resumable), judge
    them (reference-guided for math, reasoning and coding) and report overall, per-turn and
    per-category scores."""
    from capeval.cli import console
    from capeval.commands_core import _parse_options, exit_if_incomplete, print_result
    from capeval.engine import Progress
    from capeval.judge.mtbench import load_questions, run_mtbench
    from capeval.judge.recipes import load_recipe_files
    from capeval.models.base import model_options
    from capeval.runspec import RunSpec, load_spec

    if mode not in ("single", "pairwise"):
        raise CapevalError(f"--mode must be 'single' or 'pairwise', not '{mode}'")
    if mode == "pairwise" and not baseline:
        raise CapevalError("--mode pairwise needs a baseline model", "add --baseline MODEL")
    if mode == "single" and baseline:
        raise CapevalError("--baseline is only used with --mode pairwise", "add --mode pairwise, or drop --baseline")
    if baseline_option and not baseline:
        raise CapevalError("--baseline-option is given without --baseline", "add --mode pairwise --baseline MODEL")
    # --base-url and --model-option are the model's, --judge-option the judge's, --baseline-option the
    # baseline's; --batch-size and --concurrency apply to every model (judge, baseline)
    shared = model_options(batch_size=batch_size, concurrency=concurrency)
    spec = RunSpec(
        model=model, system=system, limit=limit, batch_size=batch_size, concurrency=concurrency,
        base_url=base_url, model_options=_parse_options(model_option), judge=judge,
        judge_options={**shared, **_parse_options(judge_option)},
        recipe_files=recipe_file, db=db, cache=cache, progress=not no_progress, json_out=json_out,
    )
    cache_mode = spec.cache_mode()
    recipes = load_recipe_files(spec.recipe_files)
    cats = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
    questions = load_questions(categories=cats, limit=spec.limit)
    # the same spec twice (a model judging itself) is loaded once: local weights are big
    loaded: dict[str, Any] = {}
    m = spec.load_model(loaded)
    j = spec.load_judge(loaded)
    b = load_spec(baseline, {**shared, **_parse_options(baseline_option)}, loaded) if baseline else None
    with spec.open_store() as store, Progress(spec.progress) as bar:
        result = run_mtbench(
            m, j, store, mode=mode, baseline_model=b, questions=questions,  # type: ignore[arg-type]
            max_tokens=max_tokens, system=spec.system, category_temperatures=fastchat_temperatures,
            judge_max_tokens=judge_max_tokens, model_spec=model, judge_spec=judge, baseline_spec=baseline, progress=bar,
            recipes=recipes, cache=cache_mode,
        )
        path = store.path
    print_result(result.run)
    out = json_out or path.parent / "results" / f"{result.run.run_id}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(result.run), indent=2, default=str))
    console.print(f"results: {out}   samples: capeval runs show {result.run.run_id}" + (f" --db {db}" if db else ""))
    exit_if_incomplete(result.run.n_calls_failed)


def register(app: typer.Typer) -> None:
    app.command("mtbench")(mtbench)
