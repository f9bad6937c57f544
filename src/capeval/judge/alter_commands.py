"""`capeval alter` (the capability alteration study) and `capeval alter-compare` (its analysis alone)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from capeval.commands_core import CACHE_HELP
from capeval.errors import CapevalError
from capeval.formatting import fmt_number, json_safe

DB_HELP = "SQLite store [default: $CAPEVAL_DB or the user data dir]."


def print_effect(effect: Any, console: Console, before_label: str = "without", after_label: str = "with") -> None:
    from capeval.analysis.alteration import VERDICT_LABELS
    from capeval.analysis.weakest_link import cross_parts

    t = Table(title=f"Scores (1-100) {before_label} and {after_label} the alteration of {effect.capability}, paired over items")
    for col in ("capability", "n", before_label, after_label, "change", "95% CI", "p"):
        t.add_column(col, justify="left" if col == "capability" else "right")
    ordered = sorted(effect.changes.values(), key=lambda c: (bool(cross_parts(c.capability)), c.capability != effect.capability, c.capability))
    for c in ordered:
        name = f"[bold]{c.capability}[/]" if c.capability == effect.capability else c.capability
        t.add_row(name, str(c.n), fmt_number(c.before), fmt_number(c.after), fmt_number(c.diff, sign=True), f"[{fmt_number(c.ci_low, sign=True)}, {fmt_number(c.ci_high, sign=True)}]", f"{c.p_value:.3g}")
    console.print(t)
    t = Table(title=f"Cross capabilities involving {effect.capability}: does the cross score follow its weaker part?")
    for col in ("cross capability", "weaker (before)", f"{effect.capability} is", "change weaker", "change stronger", "change cross", "moved like", "verdict"):
        t.add_column(col, justify="right" if col.startswith("change") else "left")
    for x in effect.crosses:
        colour = {"follows": "green", "does_not_follow": "red"}.get(x.verdict, "yellow")
        t.add_row(
            x.cross, x.weaker or "-", x.altered_role or "-", fmt_number(x.change_weaker, sign=True), fmt_number(x.change_stronger, sign=True),
            fmt_number(x.change_cross, sign=True), x.moved_like or "-", f"[{colour}]{VERDICT_LABELS[x.verdict]}[/]" + (f" ({x.note})" if x.note else ""),
        )
    console.print(t)
    decided = effect.decided
    if decided:
        console.print(
            f"{effect.n_follows} of {len(decided)} cross capabilities follow the change of their weaker part "
            f"({100 * effect.n_follows / len(decided):.0f}%; CrossEval's authors: 90%). A change of at most "
            f"{effect.min_change:g} points counts as none; parts must differ by more than {effect.threshold:g} points."
        )
    else:
        console.print("[yellow]no cross capability involving "
                      f"{effect.capability} could be decided (see the verdict column)[/]")


def _effect_json(effect: Any) -> dict[str, Any]:
    return {**json_safe(effect), "n_follows": effect.n_follows, "n_decided": len(effect.decided), "follow_rate": effect.follow_rate}


def alter(
    model: str = typer.Option(..., "--model", "-m", help="Model under test (any model spec)."),
    capability: str = typer.Option(..., "--capability", "-C", help="Individual capability to alter, e.g. Reasoning."),
    judge: str = typer.Option(..., "--judge", help="Judge model spec: rates answers (CrossEval recipe) and, unless --writer, writes the principles."),
    writer: str | None = typer.Option(None, "--writer", help="Model that writes the principles (default: the judge)."),
    data: Path | None = typer.Option(None, "--data", help="Local CrossEval copy (folder with test.csv, or the file) (default: the hub)."),
    dev_fraction: float = typer.Option(0.5, "--dev-fraction", help="Share of the capability's prompts used to build and select principles."),
    per_round: int = typer.Option(5, "--per-round", min=1, help="Judged answers the writer reads per round."),
    rounds: int | None = typer.Option(None, "--rounds", min=1, help="Rounds (default: one pass over the development prompts)."),
    min_gain: float = typer.Option(0.0, "--min-gain", help="Points (1-100) a round must add on the development prompts to be kept."),
    limit_per_capability: int | None = typer.Option(None, "--limit-per-capability", min=1, help="At most N prompts per capability (seeded sample)."),
    max_principles: int = typer.Option(10, "--max-principles", min=1, help="Most principles in the list."),
    system: str | None = typer.Option(None, "--system", help="A base system prompt kept in both conditions."),
    template: Path | None = typer.Option(None, "--template", help="Principle template file (copy of capeval's principle_templates/principles.jinja)."),
    threshold: float = typer.Option(3.0, "--threshold", help="Points by which the two parts must differ to call one weaker."),
    min_change: float = typer.Option(1.0, "--min-change", help="A change of at most this many points counts as no change."),
    seed: int = typer.Option(0, "--seed", help="Seed of the development split, the sampling and the bootstrap."),
    model_option: list[str] = typer.Option([], "--model-option", "-o", help="KEY=VALUE for the model's backend (repeatable)."),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server URL for --model."),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", help="Backend batch size of --model."),
    concurrency: int | None = typer.Option(None, "--concurrency", "-c", help="Requests in flight (openai backend), for every model."),
    recipe_file: list[Path] = typer.Option(
        [], "--recipe-file", help="Your edited copy of the crosseval judge recipe (`capeval judge-recipes`); it replaces the recipe its header names."
    ),
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    cache: str = typer.Option("use", "--cache", help=CACHE_HELP),
    out: Path | None = typer.Option(None, "--out", help="Folder for principles.md and study.json (default: next to the store)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide progress bars."),
) -> None:
    """Capability alteration study (CrossEval): build a principle-based system prompt that improves
    one capability, then evaluate every capability without and with it and check, for each cross
    capability involving it, whether the cross score follows its weaker part.

    All calls are cached in the store: stop it any time and run the same command again to resume."""
    from capeval.commands_core import _parse_options
    from capeval.errors import DatasetError
    from capeval.judge.alter import StudyConfig, run_study
    from capeval.judge.principles import PrincipleTemplate
    from capeval.runspec import RunSpec, build_tasks, load_spec

    console = Console()
    tpl = PrincipleTemplate.load(template)
    spec = RunSpec(
        model=model, tasks=["crosseval"], system=system, seed=seed, model_options=_parse_options(model_option),
        base_url=base_url, batch_size=batch_size, concurrency=concurrency, judge=judge, recipe_files=recipe_file,
        data={"crosseval": str(data)} if data is not None else {}, db=db, cache=cache, progress=not no_progress,
    )
    cache_mode = spec.cache_mode()
    (task,) = build_tasks(spec)
    config = StudyConfig(
        capability=capability, dev_fraction=dev_fraction, per_round=per_round, rounds=rounds, min_gain=min_gain,
        seed=seed, limit_per_capability=limit_per_capability, max_principles=max_principles, base_system=spec.system,
        threshold=threshold, min_change=min_change,
    )
    loaded: dict[str, Any] = {}
    m = spec.load_model(loaded)
    judge_model = load_spec(judge, spec.judge_backend_options(), loaded)
    writer_model = load_spec(writer, spec.judge_backend_options(), loaded) if writer else None

    with spec.open_store() as store:
        try:
            result = run_study(
                m, judge_model, task, config, store, writer=writer_model, template=tpl, model_spec=model,
                progress=spec.progress, log=lambda s: console.print(f"[dim]{s}[/]"),
                extra_config={"judge": judge, "writer": writer or judge}, cache=cache_mode,
            )
        except DatasetError as e:
            if data is not None:
                raise
            raise DatasetError(e.args[0], "save CrossEval (MingZhong/crosseval, split test) where you have internet and pass --data DIR") from None
        folder = out or store.path.parent / "alter" / f"{capability.replace(' ', '_')}-{result.altered_run or 'none'}"
    _print_rounds(result, console)
    for note in result.notes:
        console.print(f"[yellow]{note}[/]")
    folder.mkdir(parents=True, exist_ok=True)
    if result.principles:
        (folder / "principles.md").write_text(result.principles + "\n", encoding="utf-8")
        (folder / "system_prompt.txt").write_text((result.system_prompt or "") + "\n", encoding="utf-8")
    payload = json_safe({k: v for k, v in vars(result).items() if k != "effect"})
    if result.effect is not None:
        payload["effect"] = _effect_json(result.effect)
        print_effect(result.effect, console)
        console.print(f"runs: baseline {result.baseline_run}, altered {result.altered_run} "
                      f"(capeval compare {result.baseline_run} {result.altered_run})")
    (folder / "study.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
    console.print(f"study: {folder / 'study.json'}" + (f"   principles: {folder / 'principles.md'}" if result.principles else ""))


def _print_rounds(result: Any, console: Console) -> None:
    from capeval.judge.principles import count_principles

    t = Table(title=f"Principle rounds for {result.capability} (development: {len(result.dev_ids)} prompts, "
                    f"mean {fmt_number(result.baseline_dev)} without principles; held out: {len(result.heldout_ids)})")
    for col in ("round", "answers read", "actions", "unreadable", "development change", "95% CI", "kept"):
        t.add_column(col)
    for r in result.rounds:
        actions = ", ".join(u.action for u in r.updates if u.action) or "-"
        failed = sum(1 for u in r.updates if not u.parsed)
        ci = f"[{fmt_number(r.ci_low, sign=True)}, {fmt_number(r.ci_high, sign=True)}]" if r.gain is not None else "-"
        t.add_row(str(r.index), str(len(r.updates)), actions, str(failed), r.reason if r.gain is None else fmt_number(r.gain, sign=True), ci,
                  "[green]yes[/]" if r.accepted else "no")
    console.print(t)
    n = count_principles(result.principles)
    console.print(f"{result.kept_rounds} of {len(result.rounds)} rounds kept; "
                  + (f"{n} principle{'s' if n != 1 else ''} in the final list" if n else "no principles kept"))


def alter_compare(
    before: str = typer.Argument(..., help="Run id without the alteration, or a model name in --csv."),
    after: str = typer.Argument(..., help="Run id with the alteration, or a model name in --csv."),
    capability: str = typer.Option(..., "--capability", "-C", help="The capability that was altered."),
    csv: Path | None = typer.Option(None, "--csv", help="Per-item scores CSV: model,task,sample_id,metric,value[,capability]."),
    threshold: float = typer.Option(3.0, "--threshold", help="Points by which the two parts must differ to call one weaker."),
    min_change: float = typer.Option(1.0, "--min-change", help="A change of at most this many points counts as no change."),
    scale: str = typer.Option("auto", help="Scale of the scores: auto, 0-1, 1-5 or 1-100."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the result as JSON to this file."),
) -> None:
    """The alteration analysis alone: two runs (or two models of a CSV), before and after a change
    meant to alter one capability; per capability changes with CIs and, for every cross capability
    involving it, whether it follows its weaker part."""
    from capeval.analysis import tables
    from capeval.analysis.alteration import alteration_effect
    from capeval.analysis.commands import _runs_or_models

    if scale not in ("auto", "0-1", "1-5", "1-100"):
        raise CapevalError(f"unknown scale '{scale}'", "use auto, 0-1, 1-5 or 1-100")
    runs = _runs_or_models([before, after], db, csv)
    items = [tables.capability_items(r, scale=scale) for r in runs]  # type: ignore[arg-type]
    effect = alteration_effect(items[0], items[1], capability, threshold=threshold, min_change=min_change, seed=seed)
    console = Console()
    print_effect(effect, console, "before", "after")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(_effect_json(effect), indent=2, ensure_ascii=False))
        console.print(f"[dim]wrote {json_path}[/]")


def register(app: typer.Typer) -> None:
    app.command("alter")(alter)
    app.command("alter-compare")(alter_compare)
