"""Build the report: read runs from the store, compute each section, render one HTML file."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from capeval.report.data import ReportInputs, load_inputs, read_judge_checks
from capeval.report.sections import (
    Section,
    agreement_section,
    alteration_section,
    arena_section,
    capabilities_section,
    capability_scores,
    comparisons_section,
    contamination_section,
    correlation_section,
    headline_section,
    paired_votes,
    rating_pairs,
    sample_groups,
    sensitivity_section,
    task_samples_anchor,
    tasks_section,
    verdict_readings_section,
    weakest_link_section,
)
from capeval.store import Store

TEMPLATES = Path(__file__).parent / "templates"
# Enough samples per task to audit a run; the full set stays in the store (a 14k-item MMLU run
# would otherwise make a file of hundreds of megabytes).
DEFAULT_MAX_SAMPLES = 200


@dataclass(frozen=True)
class ReportOptions:
    title: str = "capeval report"
    max_samples_per_task: int | None = DEFAULT_MAX_SAMPLES
    arena_bootstrap: int = 1000
    seed: int = 0
    weakest_link_threshold: float | None = None
    gap_pairs: tuple[str, ...] = ()  # "PUBLIC_RUN:PRIVATE_RUN"
    contamination_files: tuple[Path, ...] = ()
    judge_check_files: tuple[Path, ...] = ()
    battle_files: tuple[Path, ...] = ()  # CSV: model_a, model_b, winner (an arena source each)


def _safe(name: str, build: Callable[[], Section], notes: list[str]) -> Section:
    """Build one section; an analysis that rejects its data yields a section saying why, not a crash."""
    from capeval.errors import CapevalError

    try:
        return build()
    except CapevalError as e:
        notes.append(f"{name}: {e}")
        return Section(name.lower().replace(" ", "-"), name, missing=str(e))


def build_sections(inputs: ReportInputs, options: ReportOptions) -> list[Section]:
    from capeval.analysis.arena import Battle

    notes = inputs.notes
    cap_scores = capability_scores(inputs.runs)
    votes: dict[str, list[Battle]] = {}
    for v in inputs.votes:
        if v.model_a != v.model_b:
            votes.setdefault(v.source, []).append(Battle(v.model_a, v.model_b, v.winner))
    return [
        _safe("Headline", lambda: headline_section(inputs.runs), notes),
        _safe("Per-task results", lambda: tasks_section(inputs.runs), notes),
        _safe("Is A better than B?", lambda: comparisons_section(inputs.runs, options.seed), notes),
        _safe("Capabilities", lambda: capabilities_section(cap_scores), notes),
        _safe("Law of the weakest link", lambda: weakest_link_section(cap_scores, options.weakest_link_threshold), notes),
        _safe("Capability alteration", lambda: alteration_section(inputs.runs, options.seed), notes),
        _safe("Arena leaderboard", lambda: arena_section(votes, options.arena_bootstrap, options.seed), notes),
        _safe(
            "Judge vs human",
            lambda: correlation_section(
                rating_pairs(inputs.runs, inputs.human_ratings), paired_votes(inputs.votes), inputs.judge_checks, seed=options.seed
            ),
            notes,
        ),
        _safe("Agreement between annotators", lambda: agreement_section(inputs.runs, inputs.human_ratings), notes),
        _safe("Prompt sensitivity", lambda: sensitivity_section(inputs.runs), notes),
        _safe("Contamination flags", lambda: contamination_section(inputs.contamination, inputs.gaps), notes),
        _safe("Judge verdicts read by the authors' parsers", lambda: verdict_readings_section(inputs.runs, inputs.judge_checks), notes),
    ]


def _version() -> str:
    try:
        return version("capeval")
    except PackageNotFoundError:
        return "dev"


def render_report(inputs: ReportInputs, options: ReportOptions = ReportOptions(), db_path: str = "") -> str:
    """The report as one HTML string (inline CSS and SVG; opens offline)."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html", "jinja"], default=True),
        undefined=StrictUndefined,
        trim_blocks=False,
    )
    template = env.get_template("report.html.jinja")
    sections = build_sections(inputs, options)
    return template.render(
        title=options.title,
        version=_version(),
        generated_at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        db_path=db_path,
        runs=inputs.runs,
        sections=sections,
        notes=inputs.notes,
        groups=sample_groups(inputs.runs, options.max_samples_per_task),
        max_samples=options.max_samples_per_task,
        task_anchor=task_samples_anchor,
        # our own stylesheet, inlined verbatim (escaping would break its quotes and selectors)
        css=Markup((TEMPLATES / "report.css").read_text(encoding="utf-8")),
    )


def build_report(
    store: Store, run_ids: Sequence[str], out: str | Path, options: ReportOptions = ReportOptions()
) -> Path:
    """Read `run_ids` from `store`, render the report and write it to `out`."""
    from capeval.report.flags import load_checks

    inputs = load_inputs(store, run_ids)
    inputs.contamination, inputs.gaps = load_checks(store, options.gap_pairs, options.contamination_files, options.seed)
    inputs.judge_checks = read_judge_checks(options.judge_check_files)
    for f in options.battle_files:
        from capeval.analysis.tables import read_battles_csv
        from capeval.report.data import Vote

        source = f"{Path(f).stem} (CSV)"
        inputs.votes += [Vote(source, None, b.model_a, b.model_b, b.winner) for b in read_battles_csv(f)]
    html = render_report(inputs, options, db_path=str(store.path))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
