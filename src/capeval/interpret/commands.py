"""CLI of the interpretability tools: `capeval probe` (per-layer linear probes)."""



from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from capeval.formatting import json_safe

console = Console()


def print_probe(report: Any) -> None:
    """The per-layer table: held-out R^2 per target beside the shuffled-target control's."""
    console.print(
        f"probe [bold]{', '.join(report.targets)}[/] | {report.model} | prompt {report.prompt!r} | "
        f"{report.n_train} train / {report.n_test} held-out entities, seed {report.seed}",
        highlight=False,
    )
    table = Table()
    table.add_column("layer", justify="right")
    for name in report.targets:
        table.add_column(f"R^2 {name}", justify="right")
        table.add_column(f"control {name}", justify="right")
    table.add_column("ridge alpha", justify="right")
    for p in report.layers:
        cells = []
        for name in report.targets:
            cells += [f"{p.r2[name]:.3f}", f"{p.control_r2[name]:.3f}"]
        mark = " *" if p.layer == report.best_layer else ""
        table.add_row(f"{p.layer}{mark}", *cells, f"{p.alpha:g}")
    console.print(table)
    best = report.layer(report.best_layer)
    console.print(
        f"best layer {report.best_layer}: mean held-out R^2 {best.mean_r2:.3f} "
        f"(shuffled-target control {best.mean_control_r2:.3f}); layer 0 is the embeddings"
    )


def register(app: typer.Typer) -> None:
    @app.command("probe")
    def probe(
        data: Path = typer.Option(..., "--data", help="CSV with a header: an entity column and numeric target columns."),
        target: list[str] = typer.Option(..., "--target", "-t", help="Numeric column(s) to probe for (repeat, or a,b)."),
        model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="A bundled name or hf:<path or hub id>."),
        prompt: str = typer.Option("{entity}", "--prompt", help="Text around the entity; its last token is probed."),
        entity_column: str = typer.Option("entity", "--entity-column", help="The CSV column naming the entities."),
        test_fraction: float = typer.Option(0.25, "--test-fraction", help="Share of entities held out."),
        seed: int = typer.Option(0, "--seed", help="Seed of the train/held-out split and the control's shuffle."),
        batch_size: int | None = typer.Option(None, "--batch-size", "-b", help="Entities per forward pass."),
        model_option: list[str] = typer.Option([], "--model-option", "-o", help="KEY=VALUE passed to the backend."),
        json_out: Path | None = typer.Option(None, "--json", help="Write the result here (default: results/ by the store)."),
    ) -> None:
        """Per-layer linear probes (Gurnee & Tegmark): held-out R^2 of a ridge probe from each layer's
        hidden state at the entity's last token to a numeric target, beside a shuffled-target control."""
        from capeval.commands_core import _parse_options
        from capeval.interpret.probing import entity_prompts, read_probe_csv, run_probe
        from capeval.runspec import RunSpec
        from capeval.store.db import default_db_path

        targets = [t.strip() for item in target for t in item.split(",") if t.strip()]
        probe_data = read_probe_csv(data, targets, entity_column)  # bad data fails before a model loads
        entity_prompts(probe_data.entities[:1], prompt)
        spec = RunSpec(
            model=model, batch_size=batch_size, model_options=_parse_options(model_option), seed=seed, json_out=json_out
        )
        loaded = spec.load_model()
        started = time.perf_counter()
        with console.status(f"reading {len(probe_data.entities)} entities' hidden states and fitting probes"):
            report = run_probe(loaded, probe_data, prompt=prompt, seed=spec.seed, test_fraction=test_fraction)
        print_probe(report)
        out = spec.json_out or default_db_path().parent / "results" / f"probe-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {**asdict(report), "data": str(data), "wall_s": round(time.perf_counter() - started, 2)}
        out.write_text(json.dumps(json_safe(payload), indent=2, ensure_ascii=False))
        console.print(f"results: {out}")
