"""`capeval serve-model`: serve any capeval model over an OpenAI-compatible HTTP API."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("serve-model")
    def serve_model(
        model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Model spec to serve (a bundled name, hf:<path>, ...)."),
        host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 exposes it to the network)."),
        port: int = typer.Option(8000, help="TCP port."),
        served_name: str = typer.Option("", "--served-name", help="Model name clients send (default: the spec)."),
        max_batch: int = typer.Option(
            8, "--max-batch", min=1, help="Generation requests waiting together share one model call (1: one at a time)."
        ),
        faults: str = typer.Option(
            "", help="Faults for the next requests, in order, for chaos testing: e.g. '429x2,500,hang,malformed,drop'."
        ),
        fault_rate: float = typer.Option(0.0, help="After the queued faults, the fraction of requests that fail."),
        fault_kinds: str = typer.Option("429,500", help="Kinds drawn for --fault-rate (429, 500, hang, malformed, drop, nochoices, notext, nulltext, wrongobject, empty)."),
        retry_after: float = typer.Option(1.0, help="Retry-After seconds sent with injected 429s."),
        fault_seed: int = typer.Option(0, help="Seed for which requests --fault-rate hits."),
        fault_match: str = typer.Option("", help="Only requests whose JSON body contains this text get faults."),
    ) -> None:
        """Serve a model at http://HOST:PORT/v1 (/models, /completions with echo+logprobs, /chat/completions).

        Evaluate it from another shell with `capeval run --model openai:NAME@http://HOST:PORT/v1`."""
        from rich.console import Console

        from capeval.models import load_model
        from capeval.models.serve import FaultPlan, serve

        kinds = tuple(k.strip() for k in fault_kinds.split(",") if k.strip())
        plan = FaultPlan.parse(
            faults, rate=fault_rate, kinds=kinds, retry_after=retry_after, seed=fault_seed, match=fault_match or None
        )
        use_faults = bool(plan.queued) or plan.rate > 0
        name = served_name or model
        loaded = load_model(model)
        console = Console(stderr=True)
        console.print(f"serving [bold]{model}[/] as '{name}' at http://{host}:{port}/v1")
        if use_faults:
            console.print(f"[yellow]fault injection on[/]: queued {list(plan.queued)}, rate {plan.rate} of {kinds}")
        serve(loaded, host=host, port=port, faults=plan if use_faults else None, served_name=name, max_batch=max_batch)
