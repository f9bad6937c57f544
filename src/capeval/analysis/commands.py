"""CLI commands of the analyses: compare, headline, weakest-link, arena, contamination."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from capeval.analysis import tables
from capeval.commands_core import (
    CACHE_HELP,
    INCLUDE_PATH_HELP,
    MODEL_OPTION_HELP,
    TASK_OPTION_HELP,
    _parse_options,
    _parse_task_options,
)
from capeval.errors import CapevalError
from capeval.formatting import fmt_ci, json_safe

if TYPE_CHECKING:
    from capeval.runspec import RunSpec

console = Console()
err_console = Console(stderr=True)

DB_HELP = "SQLite store (default: $CAPEVAL_DB or the user data dir)."
JSON_HELP = "Also write the full result as JSON to this file."
# sample fields that hold an item's reference solution (GSM8K/MATH rationale, HumanEval code)
REFERENCE_FIELDS = ("rationale", "solution", "canonical_solution")


def _write_json(path: Path | None, payload: Any) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(json_safe(payload), indent=2, ensure_ascii=False))
        console.print(f"[dim]wrote {path}[/]")


def _store(db: Path | None) -> Any:
    from capeval.store.db import default_db_path

    path = db if db is not None else default_db_path()
    return tables.open_store(path)


def _runs_or_models(names: Sequence[str], db: Path | None, csv: Path | None) -> list[tables.RunScores]:
    if csv is not None:
        by_model = tables.read_scores_csv(csv)
        missing = [n for n in names if n not in by_model]
        if missing:
            raise tables.TableError(f"{csv} has no model {', '.join(missing)}", f"its models: {', '.join(by_model)}")
        return [by_model[n] for n in names]
    with _store(db) as store:
        loaded = [tables.load_run_scores(store, n) for n in names]
    _warn_incomplete(loaded)
    return loaded


def _warn_incomplete(loaded: Sequence[tables.RunScores]) -> None:
    """Say loudly when an analysis uses a run whose calls did not all get answered."""
    for rs in loaded:
        if rs.incomplete:
            err_console.print(f"[bold red]warning:[/] {rs.incomplete}")


def compare(
    run_a: str = typer.Argument(..., help="Run id (prefix ok), or a model name with --csv."),
    run_b: str = typer.Argument(..., help="Run id (prefix ok), or a model name with --csv."),
    task: list[str] | None = typer.Option(None, "--task", "-t", help="Task(s) to compare (default: all shared)."),
    metric: str | None = typer.Option(None, help="Metric (default: each task's primary, its first metric)."),
    test: str = typer.Option("permutation", help="permutation (sign flips) or bootstrap."),
    resamples: int = typer.Option(10000, help="Resamples for the test and the CI."),
    seed: int = typer.Option(0),
    db: Path | None = typer.Option(None, help=DB_HELP),
    csv: Path | None = typer.Option(None, help="Per-item scores CSV instead of the store: " + tables.SCORES_CSV_HELP),
    json_path: Path | None = typer.Option(None, "--json", help=JSON_HELP),
    allow_different_subsets: bool = typer.Option(
        False, "--allow-different-subsets", help="Compare runs that evaluated different items of a task (paired on the shared ones)."
    ),
) -> None:
    """Is A better than B? Paired test per task on the items both runs scored.

    Prints the mean difference with its 95% CI, the p-value, and the minimum detectable
    difference (MDD) for that many items at 80% power and alpha 0.05."""
    from capeval.analysis.stats import compare_paired
    from capeval.scoring.metrics import higher_is_better, metric_label

    if test not in ("permutation", "bootstrap"):
        raise CapevalError(f"unknown test '{test}'", "use --test permutation or --test bootstrap")
    a, b = _runs_or_models([run_a, run_b], db, csv)
    shared = [t for t in a.metrics if t in b.metrics]
    tasks_ = list(task) if task else shared
    for t in tasks_:
        if t not in shared:
            raise CapevalError(f"task '{t}' is not in both runs", f"shared tasks: {', '.join(shared) or 'none'}")
    if not allow_different_subsets:
        tables.check_same_items([a, b], tasks_)
    results = []
    for t in tasks_:
        m = a.primary(t, metric)
        results.append(
            compare_paired(a.per_item(t, m), b.per_item(t, m), test=test, n_resamples=resamples, seed=seed, task=t, metric=m)  # type: ignore[arg-type]
        )
    tbl = Table(title=f"{a.model} ({a.name}) vs {b.model} ({b.name})")
    for col in ("task", "metric", "A", "B", "A - B", "95% CI", "p", "MDD", "n"):
        tbl.add_column(col, justify="left" if col in ("task", "metric") else "right")
    for r in results:
        tbl.add_row(
            r.task, metric_label(r.metric), f"{r.mean_a:.3f}", f"{r.mean_b:.3f}", f"{r.diff:+.3f}", fmt_ci(r.ci_low, r.ci_high, missing="nan"),
            f"{r.p_value:.4f}", f"{r.mdd:.3f}", str(r.n),
        )
    console.print(tbl)
    for r in results:
        verdict = "significant" if r.significant else "not significant"
        better = {"a": f"A ({a.model})", "b": f"B ({b.model})"}.get(r.winner or "")
        console.print(f"{r.task}: difference {r.diff:+.3f} is {verdict} at 0.05 ({r.test} test)"
                      + (f", {better} is better{'' if higher_is_better(r.metric) else ' (lower ' + r.metric + ')'}" if better else "")
                      + f"; with n={r.n}, differences below {r.mdd:.3f} are not reliably detectable")
        if r.n_only_a or r.n_only_b:
            console.print(f"[yellow]{r.task}: {r.n_only_a} items only in A, {r.n_only_b} only in B were left out[/]")
        grader_a, grader_b = a.graders.get(r.task), b.graders.get(r.task)
        if grader_a != grader_b:
            console.print(
                f"[yellow]warning: {r.task} was graded differently (A: {grader_a or 'extraction only'}; "
                f"B: {grader_b or 'extraction only'}): the difference mixes model and grader[/]",
                highlight=False,
            )
    _write_json(json_path, {"a": a.name, "b": b.name, "comparisons": results})


def headline(
    runs: list[str] = typer.Argument(..., help="Run ids (or model names with --csv)."),
    db: Path | None = typer.Option(None, help=DB_HELP),
    csv: Path | None = typer.Option(None, help="Per-item scores CSV: " + tables.SCORES_CSV_HELP),
    primary: list[str] | None = typer.Option(
        None, help="TASK=METRIC: summarise TASK by METRIC instead of its first metric (repeatable)."
    ),
    resamples: int = typer.Option(1000),
    seed: int = typer.Option(0),
    json_path: Path | None = typer.Option(None, "--json", help=JSON_HELP),
    allow_different_subsets: bool = typer.Option(
        False, "--allow-different-subsets", help="Put side by side runs that evaluated different items of a task."
    ),
) -> None:
    """One number per run: the mean over tasks of each task's primary metric, with a 95% CI.

    The CI resamples items within each task; a task's primary metric is its first metric. When the
    tasks are on different scales (accuracy and judge ratings), each is first put on 1-100."""
    from capeval.analysis.stats import headline_score
    from capeval.scoring.metrics import higher_is_better

    out = {}
    tbl = Table(title="Headline (macro mean of primary metrics)")
    for col in ("run", "model", "value", "95% CI", "tasks", "n"):
        tbl.add_column(col)
    chosen: dict[str, str] = {}
    for spec in primary or []:
        task_name, sep, metric_name = spec.partition("=")
        if not sep or not task_name or not metric_name:
            raise CapevalError(f"--primary expects TASK=METRIC, got '{spec}'")
        chosen[task_name] = metric_name
    loaded = _runs_or_models(runs, db, csv)
    if not allow_different_subsets:
        tables.check_same_items(loaded, list(dict.fromkeys(t for rs in loaded for t in rs.metrics)))
    notes = []
    scale_notes: list[str] = []
    left_out: dict[str, str] = {}
    for rs in loaded:
        notes += [f"{rs.name} {t}: {how}" for t, how in rs.selection.items() if not how.startswith("all ")]
        metrics = {t: rs.primary(t, chosen.get(t)) for t in rs.metrics}
        # a measure where lower is better (bits per byte) does not average with scores
        left_out.update({t: m for t, m in metrics.items() if not higher_is_better(m)})
        metrics = {t: m for t, m in metrics.items() if higher_is_better(m)}
        if not metrics:
            raise CapevalError(
                f"run {rs.name} has no task with a score to average: {', '.join(f'{t} ({m})' for t, m in left_out.items())} "
                "is measured where lower is better",
                "compare such runs task by task with `capeval compare`",
            )
        per_task = {t: list(rs.per_item(t, metrics[t]).values()) for t in metrics}
        scales = {t: tables.task_scale(t, metrics[t], v) for t, v in per_task.items()}
        if len(set(scales.values())) > 1:  # accuracy and judge ratings: each onto 1-100 first
            per_task = {t: tables.scores_to_100(v, scales[t]) for t, v in per_task.items()}
            scale_notes.append(
                f"{rs.name}: tasks on different scales ({', '.join(f'{t} {scales[t]}' for t in per_task)}) "
                "each put on 1-100 before averaging (0-1 x 100; 1-5 (r - 1) x 24.75 + 1; 1-10 (r - 1) x 11 + 1)"
            )
        h = headline_score(per_task, n_resamples=resamples, seed=seed, metrics=metrics)
        if len(set(scales.values())) > 1:
            h = replace(h, scale="1-100")
        out[rs.name] = h
        tbl.add_row(rs.name, rs.model, f"{h.value:.3f}", fmt_ci(h.ci_low, h.ci_high, missing="nan"), str(h.n_tasks), str(h.n_items))
    console.print(tbl)
    for note in notes:
        console.print(f"[cyan]subset[/] {note}")
    for note in scale_notes:
        console.print(f"[cyan]scales[/] {note}")
    for t, m in left_out.items():
        console.print(f"[yellow]left out[/] {t}: {m} is better when lower, not a score to average; see `capeval compare`")
    _write_json(json_path, out)


def weakest_link_cmd(
    run: list[str] | None = typer.Option(None, "--run", help="Run id(s) in the store; repeat for several models."),
    csv: Path | None = typer.Option(None, help=tables.SCORES_CSV_HELP),
    threshold: float = typer.Option(3.0, help="Points (1-100 scale) by which the two parts must differ."),
    scale: str = typer.Option("auto", help="Scale of stored scores: auto, 0-1, 1-5 or 1-100."),
    metric: str | None = typer.Option(None, help="Metric to use (default: each task's primary)."),
    db: Path | None = typer.Option(None, help=DB_HELP),
    json_path: Path | None = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """Law of the Weakest Link (CrossEval): cross capability scores vs their two parts.

    For each model and cross capability ("A & B") whose parts differ by more than --threshold,
    the cross score is counted as below both, closer to the weaker, closer to the stronger or
    above both (closer = on that side of the midpoint)."""
    from capeval.analysis.weakest_link import CATEGORIES, CATEGORY_LABELS, weakest_link

    if scale not in ("auto", "0-1", "1-5", "1-100"):
        raise CapevalError(f"unknown scale '{scale}'", "use auto, 0-1, 1-5 or 1-100")
    if bool(run) == bool(csv):
        raise CapevalError("give either --run RUN (one or more) or --csv FILE", tables.SCORES_CSV_HELP)
    if csv is not None:
        scores = tables.read_capability_csv(csv, scale)  # type: ignore[arg-type]
    else:
        with _store(db) as store:
            loaded = [tables.load_run_scores(store, r) for r in run or []]
            _warn_incomplete(loaded)
            scores = tables.capability_scores(loaded, metric, scale)  # type: ignore[arg-type]
    res = weakest_link(scores, threshold=threshold)
    if res.n_cases == 0:
        console.print("[yellow]no cross capability has individual parts differing by more than "
                      f"{threshold:g} points; nothing to classify[/]")
    tbl = Table(title=f"Weakest link: {res.n_cases} cases (parts differ by > {threshold:g} points)")
    tbl.add_column("model")
    for c in CATEGORIES:
        tbl.add_column(CATEGORY_LABELS[c], justify="right")
    tbl.add_column("mean individual", justify="right")
    tbl.add_column("mean cross", justify="right")
    avg = {a.model: a for a in res.averages}
    for m, counts in res.per_model.items():
        tbl.add_row(m, *[str(counts[c]) for c in CATEGORIES], f"{avg[m].mean_individual:.2f}", f"{avg[m].mean_cross:.2f}")
    tbl.add_row("[bold]all[/]", *[f"[bold]{res.counts[c]}[/]" for c in CATEGORIES],
                f"[bold]{res.mean_individual:.2f}[/]", f"[bold]{res.mean_cross:.2f}[/]")
    console.print(tbl)
    if res.missing:
        console.print(f"[yellow]skipped {len(res.missing)}: {'; '.join(res.missing[:5])}[/]")
    # positions: (cross - weaker) / (stronger - weaker) per case, the density plot's sample
    _write_json(json_path, {**json_safe(res), "positions": res.positions})


def arena_cmd(
    db: Path | None = typer.Option(None, help=DB_HELP + " Battles come from its pairwise_votes table."),
    csv: Path | None = typer.Option(None, help=tables.BATTLES_CSV_HELP),
    source: str | None = typer.Option(None, help="Only votes from this source (e.g. human, or a judge)."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the 95% CIs."),
    seed: int = typer.Option(0),
    anchor: str | None = typer.Option(None, help="Model pinned at --anchor-rating (default: mean at 1000)."),
    anchor_rating: float = typer.Option(1000.0),
    json_path: Path | None = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """Arena leaderboard: Bradley-Terry ratings as Chatbot Arena computes them, with 95% CIs.

    Also online Elo (K=4), battles and W-L-T per model, and a stability check that flags
    adjacent models whose bootstrap CIs overlap."""
    from capeval.analysis.arena import arena_leaderboard

    if db is not None and csv is not None:
        raise CapevalError("give --db or --csv, not both")
    if csv is not None:
        battles = tables.read_battles_csv(csv)
    else:
        with _store(db) as store:
            battles = tables.battles_from_store(store, source)
            for note in tables.incomplete_vote_runs(store, source):
                err_console.print(f"[bold red]warning:[/] votes from {note}")
    if not battles:
        raise CapevalError("no battles found", "collect votes in the web app or with a pairwise judge, or pass --csv")
    lb = arena_leaderboard(battles, n_bootstrap=bootstrap, seed=seed, anchor=anchor, anchor_rating=anchor_rating)
    tbl = Table(title=f"Arena: {lb.n_battles} battles, {bootstrap} bootstrap resamples (seed {seed})")
    for col in ("rank", "model", "rating (BT)", "95% CI", "online Elo", "battles", "W-L-T"):
        tbl.add_column(col, justify="left" if col == "model" else "right")
    for r in lb.ratings:
        tbl.add_row(str(r.rank), r.model, f"{r.rating:.1f}", fmt_ci(r.ci_low, r.ci_high, 1, missing="nan"), f"{r.elo:.1f}",
                    str(r.n_battles), f"{r.wins}-{r.losses}-{r.ties}")
    console.print(tbl)
    for w in lb.warnings:
        console.print(f"[yellow]warning: {w}[/]")
    if lb.unstable_pairs:
        pairs = ", ".join(f"{a} / {b}" for a, b in lb.unstable_pairs)
        console.print(f"[yellow]ranking not stable: overlapping 95% CIs for {pairs}[/]")
    else:
        console.print("ranking stable: no adjacent models have overlapping 95% CIs")
    _write_json(json_path, lb)


contamination_app = typer.Typer(help="Contamination checks: split gap, perturbed variants, memorisation, n-gram overlap.")


@contamination_app.command("gap")
def contamination_gap(
    public: str = typer.Option(..., help="Run on the public split (or model name with --csv)."),
    private: str = typer.Option(..., help="Run on the private split (or model name with --csv)."),
    task: str | None = typer.Option(None, help="Task in the public run (default: its only task)."),
    private_task: str | None = typer.Option(None, help="Task in the private run (default: same as --task)."),
    metric: str | None = typer.Option(None),
    db: Path | None = typer.Option(None, help=DB_HELP),
    csv: Path | None = typer.Option(None, help=tables.SCORES_CSV_HELP),
    variants: Path | None = typer.Option(
        None, help="If the private run was on `contamination perturb` output: that JSONL, to pair each "
        "variant with its original item (by the original's id or row index)."
    ),
    resamples: int = typer.Option(10000),
    seed: int = typer.Option(0),
    json_path: Path | None = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """Public vs private split: is the score on public items higher than CIs allow?

    With --variants, also the paired drop from each original item to its perturbed variants."""
    from capeval.analysis.contamination import perturbation_drop, split_gap

    pub, priv = _runs_or_models([public, private], db, csv)

    def pick(rs: tables.RunScores, t: str | None) -> str:
        if t:
            return t
        if len(rs.metrics) != 1:
            raise CapevalError(f"{rs.name} has several tasks", f"pick one with --task: {', '.join(rs.metrics)}")
        return next(iter(rs.metrics))

    t_pub = pick(pub, task)
    t_priv = pick(priv, private_task or task)
    m = pub.primary(t_pub, metric)
    g = split_gap(list(pub.per_item(t_pub, m).values()), list(priv.per_item(t_priv, m).values()), resamples, seed)
    tbl = Table(title=f"Split gap on {t_pub} ({m})")
    for col in ("metric", "value", "95% CI", "n"):
        tbl.add_column(col)
    tbl.add_row("public", f"{g.mean_public:.3f}", "", str(g.n_public))
    tbl.add_row("private", f"{g.mean_private:.3f}", "", str(g.n_private))
    tbl.add_row("gap (public - private)", f"{g.gap:+.3f}", fmt_ci(g.ci_low, g.ci_high, missing="nan"), "")
    tbl.add_row("p-value (permutation)", f"{g.p_value:.4f}", "", "")
    tbl.add_row("minimum detectable gap", f"{g.mdd:.3f}", "", "")
    drop = None
    if variants is not None:
        rows = list(tables.iter_jsonl(variants))
        originals = pub.per_item(t_pub, m)
        # tasks number local rows by position, or use the row's id: pair on whichever matches
        by_id = {str(i): str(r.get("original_id")) for i, r in enumerate(rows)}
        by_index = {str(i): str(r.get("original_index")) for i, r in enumerate(rows)}
        mapping = max((by_id, by_index), key=lambda mp: sum(1 for o in mp.values() if o in originals))
        drop = perturbation_drop(originals, priv.per_item(t_priv, m), mapping, resamples, seed)
        tbl.add_row("paired drop (original - variants)", f"{drop.diff:+.3f}", fmt_ci(drop.ci_low, drop.ci_high, missing="nan"), str(drop.n))
        tbl.add_row("p-value (paired permutation)", f"{drop.p_value:.4f}", "", "")
    console.print(tbl)
    console.print("[bold red]FLAGGED[/]: public score is significantly higher than private" if g.flagged
                  else "not flagged: the gap is within what the CIs allow")
    _write_json(json_path, {**json_safe(g), "paired_drop": json_safe(drop) if drop else None})


@contamination_app.command("perturb")
def contamination_perturb(
    data: Path = typer.Option(..., help="GSM8K-style JSONL: question, answer ('... <<a*b=c>>c ... #### N'), optional id."),
    out: Path = typer.Option(..., help="Where to write the variants (JSONL with question, answer, original fields)."),
    variants: int = typer.Option(1, help="Variants per item."),
    seed: int = typer.Option(0),
    json_path: Path | None = typer.Option(None, "--json", help=JSON_HELP + " (the summary)"),
) -> None:
    """GSM-Symbolic style variants: new names and numbers, answers recomputed.

    The answer is recomputed from each item's <<expr=result>> arithmetic; items whose solution
    cannot be followed are skipped and counted by reason."""
    from capeval.analysis.contamination import perturb_gsm8k

    rep = perturb_gsm8k(tables.iter_jsonl(data), n_variants=variants, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for v in rep.variants:
            f.write(json.dumps(json_safe(v), ensure_ascii=False) + "\n")
    console.print(f"perturbed {rep.n_perturbed} of {rep.n_items} items ({rep.fraction_perturbed:.1%}); "
                  f"wrote {len(rep.variants)} variants to {out}")
    for reason, n in sorted(rep.rejected.items(), key=lambda kv: -kv[1]):
        console.print(f"  skipped {n}: {reason}")
    _write_json(json_path, {"n_items": rep.n_items, "n_perturbed": rep.n_perturbed,
                            "fraction_perturbed": rep.fraction_perturbed, "n_variants": len(rep.variants), "rejected": rep.rejected})


def _task_items(spec: RunSpec) -> list[tuple[str, str]]:
    """The items of the spec's one task (built with its --data, --include-path and --task-option),
    each as (id, text): the question as the task renders it, plus the reference solution where the
    task keeps one: both can have leaked into training data."""
    from capeval.runspec import build_tasks

    tasks = build_tasks(spec)
    if len(tasks) != 1:
        raise CapevalError(f"--task names {len(tasks)} tasks ({', '.join(t.name for t in tasks)})", "name one task")
    (t,) = tasks
    items = []
    for s in t.load(limit=spec.limit, strict=spec.strict).samples:
        text = t.question(s)
        for key in REFERENCE_FIELDS:
            ref = s.fields.get(key)
            if isinstance(ref, str) and ref.strip():
                text += "\n" + ref
                break
        items.append((s.id, text))
    return items


def _items_spec(task: str, data: Path | None, include_path: list[Path], task_option: list[str], **fields: Any) -> RunSpec:
    """A RunSpec of one task: --data PATH is that task's, --task-option TASK.KEY=VALUE as `capeval run`."""
    from capeval.runspec import RunSpec

    return RunSpec(
        tasks=[task], data={task: str(data)} if data else {}, include_paths=include_path,
        task_options=_parse_task_options(task_option), **fields,
    )


@contamination_app.command("ngram")
def contamination_ngram(
    task: str = typer.Option(..., help="Benchmark whose items are checked."),
    corpus: Path = typer.Option(..., help="Plain-text corpus, streamed line by line."),
    n: int = typer.Option(13, help="n-gram size in words."),
    flag_ratio: float = typer.Option(0.5, help="Flag items with at least this share of n-grams in the corpus."),
    data: Path | None = typer.Option(None, help="Local copy of the task's data."),
    limit: int | None = typer.Option(None),
    include_path: list[Path] = typer.Option([], "--include-path", help=INCLUDE_PATH_HELP),
    task_option: list[str] = typer.Option([], "--task-option", help=TASK_OPTION_HELP),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first malformed dataset row."),
    json_path: Path | None = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """n-gram overlap between a task's items and a corpus (lowercased words, punctuation removed)."""
    from capeval.analysis.contamination import ngram_overlap

    spec = _items_spec(task, data, include_path, task_option, limit=limit, strict=strict, json_out=json_path)
    res = ngram_overlap(_task_items(spec), corpus, n=n, flag_ratio=flag_ratio)
    scored = [i for i in res.items if i.ratio is not None]
    mean = sum(i.ratio or 0 for i in scored) / len(scored) if scored else float("nan")
    tbl = Table(title=f"{n}-gram overlap of {task} with {corpus.name} ({res.corpus_tokens} corpus words)")
    for col in ("metric", "value", "n"):
        tbl.add_column(col)
    tbl.add_row("items with any overlap", str(res.n_any_overlap), str(len(res.items)))
    tbl.add_row(f"items flagged (ratio >= {flag_ratio:g})", str(len(res.flagged)), str(len(res.items)))
    tbl.add_row("mean overlap ratio", f"{mean:.4f}", str(len(scored)))
    tbl.add_row(f"items shorter than {n} words", str(len(res.items) - len(scored)), "")
    console.print(tbl)
    for i in res.flagged[:10]:
        console.print(f"  flagged {i.id}: {i.n_matched}/{i.n_ngrams} n-grams found")
    _write_json(json_path, res)


@contamination_app.command("memorisation")
def contamination_memorisation(
    model: str = typer.Option(..., help="Model spec, e.g. smollm2-135m-instruct."),
    task: str = typer.Option(..., help="Benchmark whose items are given half-way."),
    prefix_fraction: float = typer.Option(0.5, help="Share of each item's words given as the prompt."),
    data: Path | None = typer.Option(None, help="Local copy of the task's data."),
    limit: int | None = typer.Option(100),
    include_path: list[Path] = typer.Option([], "--include-path", help=INCLUDE_PATH_HELP),
    task_option: list[str] = typer.Option([], "--task-option", help=TASK_OPTION_HELP),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first malformed dataset row."),
    db: Path | None = typer.Option(None, help=DB_HELP + " Model calls are cached there."),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", help="Backend batch size."),
    concurrency: int | None = typer.Option(None, "--concurrency", "-c", help="Requests in flight (openai backend)."),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (openai backend)."),
    model_option: list[str] = typer.Option([], "--model-option", "-o", help=MODEL_OPTION_HELP),
    cache: str = typer.Option("use", "--cache", help=CACHE_HELP),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide progress bars."),
    json_path: Path | None = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """Verbatim memorisation: does the model continue an item's first part with its true rest?"""
    from capeval.analysis.contamination import verbatim_memorisation

    spec = _items_spec(
        task, data, include_path, task_option, model=model, limit=limit, strict=strict, db=db, batch_size=batch_size,
        concurrency=concurrency, base_url=base_url, model_options=_parse_options(model_option), cache=cache,
        progress=not no_progress, json_out=json_path,
    )
    cache_mode = spec.cache_mode()
    items = _task_items(spec)  # a bad task or data file fails before the model loads
    m = spec.load_model()
    with spec.open_store() as store:
        res = verbatim_memorisation(m, items, store, prefix_fraction, progress=spec.progress, cache=cache_mode)
    tbl = Table(title=f"Verbatim memorisation of {task} by {model} (prefix {prefix_fraction:.0%})")
    for col in ("metric", "value", "n"):
        tbl.add_column(col)
    n = str(len(res.items))
    tbl.add_row("exact continuation rate", f"{res.exact_rate:.3f}", n)
    tbl.add_row(f"near-exact rate (ROUGE-L >= {res.near_threshold:g})", f"{res.near_exact_rate:.3f}", n)
    tbl.add_row("mean ROUGE-L", f"{res.mean_rouge_l:.3f}", n)
    tbl.add_row("mean edit similarity", f"{res.mean_edit_similarity:.3f}", n)
    console.print(tbl)
    if res.failed:
        console.print(
            f"[yellow]incomplete[/] {len(res.failed)} items' model calls failed for good (first: {res.failed[0]}); "
            "left out of every rate, not counted as not memorised. Re-run the same command to retry them."
        )
    _write_json(json_path, res)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
    app.command("headline")(headline)
    app.command("weakest-link")(weakest_link_cmd)
    app.command("arena")(arena_cmd)
    app.add_typer(contamination_app, name="contamination")
