"""Core commands: `capeval run`, `capeval tasks`, `capeval models`, `capeval runs list|show|export`."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from capeval.errors import CapevalError
from capeval.formatting import fmt_ci, fmt_number
from capeval.types import RunResult

if TYPE_CHECKING:
    from capeval.runspec import RunSpec

# `capeval run` with no model and no task is the default job (capeval.first_run): both bundled
# models on a stratified sample of packaged data, a paired test and the HTML report.
DEFAULT_MODEL = "smollm2-135m-instruct"
# help texts of options several commands take (each maps to one RunSpec field)
INCLUDE_PATH_HELP = "Folder or file of task specs, YAML or .py (repeatable)."
TASK_OPTION_HELP = (
    "TASK.KEY=VALUE passed to the task, e.g. humaneval.n_samples=10, 'humaneval.k_values=[1,10]' "
    "(repeatable; `capeval tasks` lists the tasks)."
)
MODEL_OPTION_HELP = "KEY=VALUE passed to the backend, e.g. dtype=bfloat16, max_retries=3, timeout=60 (repeatable)."
CACHE_HELP = (
    "use: answer calls from the store when it has them; refresh: send every call again and overwrite "
    "(a server whose model cannot be identified); off: neither read nor write answers."
)

runs_app = typer.Typer(help="List, show and export stored runs.", no_args_is_help=True)


def _console() -> Any:
    from capeval.cli import console

    return console


def _fmt(v: float | None) -> str:
    """A metric value as the tables show it: 4 decimals, `nan` when missing."""
    return fmt_number(v, 4, missing="nan")


def results_table(result: RunResult) -> Table:
    """The metric table. When calls failed, `n` reads answered/asked and a `failed` column counts
    the items left out (a failed call is not a wrong answer)."""
    failures = any(m.n_failed for m in result.metrics)
    table = Table(title=f"run {result.run_id}  model {result.model}" + ("  [bold red]INCOMPLETE[/]" if failures else ""))
    # "items" appears when a metric was computed on a subset: "sample 40/80" of the task's items
    subset = any(m.subset for m in result.metrics)
    cols = ["task", "metric", "value", "95% CI", "n answered/total" if failures else "n", "unparsed"]
    cols += ["failed"] if failures else []
    cols += ["items"] if subset else []
    for col in cols:
        table.add_column(col, justify="right" if col not in ("task", "metric") else "left")
    for m in result.metrics:
        n = f"{m.n}/{m.n + m.n_failed}" if failures else str(m.n)
        row = [m.task, m.metric, _fmt(m.value), fmt_ci(m.ci_low, m.ci_high, 4, missing="nan"), n, f"{m.unparsed_rate:.1%}"]
        if failures:
            row.append(f"[red]{m.n_failed}[/]" if m.n_failed else "0")
        if subset:
            row.append(m.subset or "all")
        table.add_row(*row)
    return table


def subset_lines(result: RunResult) -> list[str]:
    """One line per task evaluated on a subset of its items, from the run config."""
    from capeval.tasks.subsets import Subset

    return [
        f"{task}: {Subset.from_config(d).describe()}; its metrics describe these items, not the whole task"
        for task, d in (result.config.get("subsets") or {}).items()
    ]


def print_result(result: RunResult) -> None:
    console = _console()
    console.print(results_table(result))
    console.print(
        f"model calls: {result.n_calls_cached} cached, {result.n_calls_new} new"
        + (f", [bold red]{result.n_calls_failed} failed[/]" if result.n_calls_failed else "")
    )
    for line in subset_lines(result):
        console.print(f"[cyan]subset[/] {line}")
    for task, grader in (result.config.get("graders") or {}).items():
        console.print(f"[cyan]graded by[/] {task}: {grader}", markup=True, highlight=False)
    warned: set[str] = set()
    for m in result.metrics:
        if m.warning and m.task not in warned:
            warned.add(m.task)
            console.print(f"[yellow]warning[/] {m.task}: {m.warning}")
    for w in result.warnings:
        console.print(f"[yellow]warning[/] {w}")


def _parse_data(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        task, sep, path = item.partition("=")
        if not sep or not task or not path:
            raise CapevalError(f"--data expects TASK=PATH, got '{item}'", "e.g. --data mmlu=./mmlu_local")
        out[task] = path
    return out


def _option_value(raw: str) -> Any:
    """A command-line option value: JSON where it parses (3, 1.5, true, [1, 3]), else the text."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _parse_options(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE strings to backend options; values read as JSON where they parse (3, 1.5, true)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CapevalError(f"--model-option expects KEY=VALUE, got '{item}'", "e.g. --model-option dtype=bfloat16")
        out[key] = _option_value(raw)
    return out


def _parse_task_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """TASK.KEY=VALUE strings to {task: {key: value}}; JSON lists become tuples (k_values=[1,3])."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, raw = item.partition("=")
        task, dot, key = target.rpartition(".")  # task names may hold dots, option names do not
        if not sep or not dot or not task or not key:
            raise CapevalError(
                f"--task-option expects TASK.KEY=VALUE, got '{item}'", "e.g. --task-option humaneval.n_samples=10"
            )
        value = _option_value(raw)
        out.setdefault(task, {})[key] = tuple(value) if isinstance(value, list) else value
    return out


def run(
    model: str | None = typer.Option(None, "--model", "-m", help=f"Model spec: bundled name, hf:PATH, openai:NAME, vllm:PATH (default: {DEFAULT_MODEL})."),
    tasks: str | None = typer.Option(None, "--tasks", "-t", help="Comma-separated tasks or suites (default: the default job's tasks and --sample)."),
    shots: int | None = typer.Option(None, "--shots", "-k", help="Few-shot exemplars (default: each task's own)."),
    cot: bool = typer.Option(False, "--cot", help="Chain of thought: rationale exemplars or 'Let's think step by step'."),
    system: str | None = typer.Option(None, "--system", help="System / role prompt, the same for every model."),
    chat: bool = typer.Option(False, "--chat", help="Send chat messages through the model's chat template."),
    limit: int | None = typer.Option(None, "--limit", "-n", help="The first N samples of each task (per subject for MMLU, CMMLU, C-Eval, BBH, MATH, HHH), as lm-eval; warns when they leave categories out."),
    sample: int | None = typer.Option(None, "--sample", help="A seeded sample of N items per task (--seed), stratified by the task's subjects or categories; the same items for every model."),
    stratify: list[str] = typer.Option([], "--stratify", help="FIELD or TASK=FIELD: stratify --sample by this item field (default: the task's subject/category; repeatable)."),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", help="Backend batch size."),
    concurrency: int | None = typer.Option(None, "--concurrency", "-c", help="Requests in flight (openai backend)."),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (openai backend)."),
    db: Path | None = typer.Option(None, "--db", help="SQLite store (default: $CAPEVAL_DB or the user data dir)."),
    include_path: list[Path] = typer.Option([], "--include-path", help=INCLUDE_PATH_HELP),
    data: list[str] = typer.Option([], "--data", help="TASK=PATH: read TASK from a local file/folder (repeatable)."),
    task_option: list[str] = typer.Option([], "--task-option", help=TASK_OPTION_HELP),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first malformed dataset row."),
    model_option: list[str] = typer.Option([], "--model-option", "-o", help=MODEL_OPTION_HELP),
    judge: str | None = typer.Option(None, "--judge", help="Judge model spec for judged tasks (CrossEval, writing)."),
    judge_option: list[str] = typer.Option([], "--judge-option", help="KEY=VALUE passed to the judge's backend, e.g. api_key=..., max_retries=3 (repeatable; --concurrency applies to it too)."),
    recipe_file: list[Path] = typer.Option([], "--recipe-file", help="Your edited copy of a judge recipe (`capeval judge-recipes`); it replaces the recipe its header names in the judged tasks (repeatable)."),
    prompt_variants: int = typer.Option(1, "--prompt-variants", help="Run each task with N prompt templates and report the spread."),
    seed: int = typer.Option(1234, "--seed", help="Seed for few-shot exemplar selection and --sample."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write results as JSON here."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide progress bars."),
    save_every: int | None = typer.Option(None, "--save-every", min=1, help="Local backends: requests per backend call, each call saved before the next (default: the backend's batch size). Streaming backends (openai): commit answers every N (default 16) or every 0.25 s."),
    cache: str = typer.Option("use", "--cache", help=CACHE_HELP),
) -> None:
    """Evaluate a model on tasks. With no arguments: the default job, both bundled models on the
    same stratified sample of packaged MT-Bench data, offline, with a paired test and an HTML report.

    --task-option TASK.KEY=VALUE sets a keyword argument of a task's factory.
    HumanEval pass@1 and pass@10 from 10 samples per problem (temperature 0.8):
    --task-option humaneval.n_samples=10 --task-option 'humaneval.k_values=[1,10]'

    Exit codes: 0 every model call answered; 3 some calls failed for good (run `incomplete`,
    metrics over the answered items; re-run to retry them); 130 / 143 stopped by SIGINT / SIGTERM
    (run `interrupted`; re-run the same command to resume); 2 a usage error; 1 an unexpected error."""
    from capeval.first_run import DEFAULT_JOB, run_default_job
    from capeval.interrupts import Interrupted, handle_signals
    from capeval.runspec import RunSpec, cache_mode

    console = _console()
    cache_mode(cache)
    if model is None and tasks is None:
        others = {
            "--limit": limit is not None, "--chat": chat, "--cot": cot, "--system": system is not None,
            "--data": bool(data), "--task-option": bool(task_option), "--model-option": bool(model_option),
            "--judge": judge is not None, "--judge-option": bool(judge_option), "--prompt-variants": prompt_variants > 1, "--stratify": bool(stratify),
            "--include-path": bool(include_path), "--batch-size": batch_size is not None,
            "--concurrency": concurrency is not None, "--base-url": base_url is not None, "--strict": strict,
            "--recipe-file": bool(recipe_file), "--cache": cache != "use",
        }
        single_run = [flag for flag, on in others.items() if on]
        if single_run:
            raise CapevalError(
                f"{', '.join(single_run)} {'needs' if len(single_run) == 1 else 'need'} --model or --tasks "
                "(with neither, capeval runs its default job)",
                f"e.g. capeval run --model {DEFAULT_MODEL} --tasks {','.join(DEFAULT_JOB.tasks)} {' '.join(single_run)} ...",
            )
        job = replace(
            DEFAULT_JOB, sample=sample or DEFAULT_JOB.sample, seed=seed,
            shots=shots if shots is not None else DEFAULT_JOB.shots,
        )
        with handle_signals():
            try:
                run_default_job(job, db=db, json_out=json_out, progress=not no_progress, chunk_size=save_every)
            except Interrupted as e:
                console.print("[yellow]interrupted[/]: finished model calls are stored; `capeval run` again resumes")
                raise typer.Exit(e.exit_code) from None
        return
    if tasks is None:
        # a model without tasks gets the default job's tasks and items, so it compares with its runs
        tasks = ",".join(DEFAULT_JOB.tasks)
        if limit is None and sample is None:
            sample = DEFAULT_JOB.sample
        console.print(f"[dim]{model} on {tasks}" + (f", --sample {sample}" if sample else "") + " (--tasks to change)[/]")
    spec = RunSpec(
        model=model or DEFAULT_MODEL, tasks=tasks.split(","), shots=shots, cot=cot, system=system, chat=chat, seed=seed,
        prompt_variants=prompt_variants, limit=limit, sample=sample, stratify=stratify, batch_size=batch_size,
        concurrency=concurrency, base_url=base_url, model_options=_parse_options(model_option), judge=judge,
        judge_options=_parse_options(judge_option),
        recipe_files=recipe_file, include_paths=include_path, data=_parse_data(data),
        task_options=_parse_task_options(task_option), strict=strict, db=db, save_every=save_every, cache=cache,
        progress=not no_progress, json_out=json_out,
    )
    run_spec(spec)


def run_spec(spec: RunSpec) -> None:
    """`capeval run` after its options are read: resolve the spec, run it, print and save the
    results; exit 3 when calls failed for good, 130/143 when a signal stopped it."""
    from capeval.interrupts import Interrupted, handle_signals
    from capeval.runspec import execute, resolve

    console = _console()
    resolved = resolve(spec)
    with spec.open_store() as store, handle_signals():
        try:
            outcome = execute(resolved, store)
        except Interrupted as e:
            _print_interrupted(e, store)
            raise typer.Exit(e.exit_code) from None
        for r in outcome.results:
            print_result(r)
        if outcome.sensitivity is not None:
            _print_sensitivity(outcome.sensitivity)
        result = outcome.result
        for t in resolved.tasks:
            if t.breakdown is not None:
                t.breakdown(store, result.run_id, console)
        out = spec.json_out or store.path.parent / "results" / f"{result.run_id}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(asdict(result), indent=2, default=str))
        console.print(f"results: {out}   samples: capeval runs show {result.run_id}" + (f" --db {spec.db}" if spec.db else ""))
    exit_if_incomplete(sum(r.n_calls_failed for r in outcome.results))


def exit_if_incomplete(failed: int) -> None:
    """Exit with EXIT_INCOMPLETE, saying how to retry, when `failed` model calls failed for good."""
    if failed:
        from capeval.cli import err_console
        from capeval.interrupts import EXIT_INCOMPLETE

        err_console.print(
            f"[yellow]incomplete run[/]: {failed} model calls failed for good (exit code {EXIT_INCOMPLETE}); "
            f"retry them with: {_this_command()}"
        )
        raise typer.Exit(EXIT_INCOMPLETE)


def _this_command() -> str:
    import shlex

    return "capeval " + shlex.join(sys.argv[1:])


def _print_interrupted(e: Any, store: Any) -> None:
    from capeval.cli import err_console

    stored = f"{e.stored} of {e.total} model calls are stored" if e.stored is not None else "finished model calls are stored"
    where = f"run {e.run_id} marked interrupted; " if e.run_id else ""
    err_console.print(f"[yellow]interrupted[/] ({e}): {where}{stored} in {store.path}")
    err_console.print(f"resume with: {_this_command()}")


def _print_sensitivity(summary: Any) -> None:
    """The sensitivity table; `n` is each variant's answered/asked items where calls failed."""
    console = _console()
    rows = [r if isinstance(r, dict) else r.as_dict() for r in (summary if isinstance(summary, list) else getattr(summary, "rows", []))]
    failures = any(any(d.get("n_failed") or ()) for d in rows)
    table = Table(title="prompt sensitivity (across templates)")
    for col in ("task", "metric", "mean", "min", "max", "std", "templates", "n answered/total per template" if failures else "n"):
        table.add_column(col)
    for d in rows:
        ns, failed = tuple(d.get("n") or ()), tuple(d.get("n_failed") or ())
        if failures and failed:
            n = " ".join(f"{a}/{a + f}" if f else str(a) for a, f in zip(ns, failed))
        else:
            n = str(ns[0]) if len(set(ns)) == 1 else " ".join(map(str, ns))
        table.add_row(
            str(d["task"]), str(d["metric"]), _fmt(d["mean"]), _fmt(d["min"]), _fmt(d["max"]), _fmt(d["std"]), str(d["n_variants"]), n
        )
    console.print(table)
    for d in rows:
        if d.get("warning"):
            console.print(f"[yellow]warning[/] {d['warning']}")


def tasks_cmd(
    include_path: list[Path] = typer.Option([], "--include-path", help=INCLUDE_PATH_HELP),
    json_flag: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """List the tasks and suites with their settings."""
    from capeval.tasks import get_task, task_names
    from capeval.tasks.registry import SUITES, add_include_path

    for p in include_path:
        add_include_path(p)
    infos = []
    for name in task_names():
        try:
            infos.append(get_task(name).info())
        except CapevalError as e:
            infos.append({"name": name, "description": f"(cannot build: {e})"})
    if json_flag:
        print(json.dumps({"tasks": infos, "suites": SUITES}, indent=2, default=str))
        return
    table = Table(title=f"{len(infos)} tasks")
    for col in ("name", "type", "shots", "metrics", "capabilities", "source", "description"):
        table.add_column(col, overflow="fold")
    for i in infos:
        table.add_row(*(str(i.get(c, "")) for c in ("name", "type", "shots", "metrics", "capabilities", "source", "description")))
    console = _console()
    console.print(table)
    for suite, members in sorted(SUITES.items()):
        console.print(f"suite [bold]{suite}[/]: {', '.join(members)}")


def models_cmd() -> None:
    """List the bundled models and the backends' spec formats (other packages' backends included)."""
    from rich.markup import escape

    from capeval.models import bundled, plugin_backends

    table = Table(title="models")
    for col in ("spec", "what", "status"):
        table.add_column(col)
    for name, entry in bundled.BUNDLED.items():
        status = "weights cached" if bundled.is_cached(name) else "de-quantised on first use"
        table.add_row(name, str(getattr(entry, "description", "")), status)
    rows = (
        ("hf:PATH_OR_HUB_ID", "transformers: a local folder, hub id, or file.gguf"),
        ("openai:MODEL[@URL]", "any OpenAI-compatible server (--base-url, OPENAI_API_KEY)"),
        ("vllm:PATH_OR_HUB_ID", "vLLM offline engine (GPU; pip install 'capeval[vllm]')"),
        ("ray:SPEC", "any spec above on Ray replicas (-o replicas=N, -o address=auto; pip install 'capeval[ray]')"),
    )
    for spec, what in rows:
        table.add_row(escape(spec), escape(what), "")
    for name, doc, origin in plugin_backends():
        table.add_row(escape(f"{name}:SPEC"), escape(doc), escape(f"from {origin}"))
    _console().print(table)


def _status(store: Any, row: Any) -> str:
    """A run's state, coloured; a run left `running` by a process that is gone reads `interrupted`."""
    status = store.run_status(row)
    colour = {"finished": "green", "incomplete": "red", "interrupted": "yellow", "running": "cyan", "failed": "red"}.get(
        status, ""
    )
    note = " (process gone)" if status != row["status"] else ""
    return f"[{colour}]{status}[/]{note}" if colour else status


@runs_app.command("list")
def runs_list(
    db: Path | None = typer.Option(None, "--db"),
    limit: int = typer.Option(50, "--limit"),
) -> None:
    """Stored runs, newest first."""
    from capeval.store import Store

    with Store(db) as store:
        table = Table(title=f"runs in {store.path} (store schema version {store.schema_version})")
        for col in ("run", "model", "tasks", "status", "headline"):
            table.add_column(col)
        for r in store.runs(limit):
            res = json.loads(r["results"]) if r["results"] else None
            head = ""
            if res and res["metrics"]:
                m = res["metrics"][0]
                head = f"{m['task']}/{m['metric']} {_fmt(m['value'])}"
            table.add_row(r["run_id"], r["model_spec"], ",".join(json.loads(r["tasks"])), _status(store, r), head)
        _console().print(table)


@runs_app.command("show")
def runs_show(
    run_id: str = typer.Argument(..., help="Run id (a unique prefix is enough)."),
    db: Path | None = typer.Option(None, "--db"),
    samples: int = typer.Option(3, "--samples", help="Show this many samples per task."),
) -> None:
    """A run's results table and its first samples (prompt, output, extracted answer, scores)."""
    from capeval.store import Store

    with Store(db) as store:
        row = store.run(run_id)
        if row is None:
            raise CapevalError(f"no run '{run_id}' in {store.path}", "capeval runs list")
        result = store.run_result(row["run_id"])
        status = store.run_status(row)
        if result is None:
            _console().print(f"run {row['run_id']} is {_status(store, row)} (no results yet)")
        else:
            print_result(result)
            if status != "finished":
                _console().print(f"status: {_status(store, row)}")
        if status == "failed":
            _console().print(f"error: {row['error']}", markup=False)
        if status in ("interrupted", "failed"):
            _console().print("[dim]re-run the command that started it to resume: stored model calls are not sent again[/]")
        # the full identity (fingerprint of the files, hub commit) next to the spec as given
        _console().print(f"model id: {row['model_id']}", markup=False)
        shown: dict[str, int] = {}
        for s in store.iter_samples(row["run_id"]):
            if shown.get(s["task"], 0) >= samples:
                continue
            shown[s["task"]] = shown.get(s["task"], 0) + 1
            _console().rule(f"{s['task']} / {s['sample_id']}")
            _console().print(s["prompt"][-1500:], markup=False)
            _console().print(f"[bold]response[/] {json.dumps(s['response'], ensure_ascii=False)[:1500]}")
            _console().print(f"[bold]extracted[/] {s['extracted']!r}  [bold]target[/] {s['target']!r}  [bold]scores[/] {s['scores']}")


@runs_app.command("export")
def runs_export(
    run_id: str = typer.Argument(..., help="Run id (a unique prefix is enough)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file: .jsonl or .csv."),
    db: Path | None = typer.Option(None, "--db"),
) -> None:
    """Every sample of a run (prompt, response, extracted answer, target, scores) as JSONL or CSV."""
    from capeval.store import Store

    with Store(db) as store:
        row = store.run(run_id)
        if row is None:
            raise CapevalError(f"no run '{run_id}' in {store.path}", "capeval runs list")
        rows = list(store.iter_samples(row["run_id"]))
    if out.suffix == ".jsonl":
        with out.open("w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    elif out.suffix == ".csv":
        metric_names = sorted({m for r in rows for m in r["scores"]})
        with out.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["run_id", "task", "sample_id", "prompt", "response", "extracted", "target", "parsed", *metric_names])
            for r in rows:
                w.writerow(
                    [r["run_id"], r["task"], r["sample_id"], r["prompt"], json.dumps(r["response"], ensure_ascii=False),
                     r["extracted"], json.dumps(r["target"], ensure_ascii=False), int(r["parsed"]),
                     *[r["scores"].get(m, "") for m in metric_names]]
                )
    else:
        raise CapevalError(f"unsupported export format '{out.suffix}'", "use a .jsonl or .csv file name")
    print(f"wrote {len(rows)} samples to {out}", file=sys.stderr)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("tasks")(tasks_cmd)
    app.command("models")(models_cmd)
    app.add_typer(runs_app, name="runs")
