"""Task: a benchmark as data source + field mapping + prompt format + scorer."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from capeval.errors import DatasetError, TaskSpecError
from capeval.prompting import PromptConfig, PromptLayout, RenderedPrompt, Turn, render, select_exemplars
from capeval.scoring.base import Scorer, ScoringContext
from capeval.tasks.sources import MALFORMED, Source, load_rows
from capeval.types import (
    LETTERS,
    BreakdownRow,
    GenerationParams,
    MetricResult,
    Request,
    Response,
    Sample,
    Score,
)

if TYPE_CHECKING:
    from rich.console import Console

    from capeval.judge.recipes import JudgeRecipe
    from capeval.store.db import Store

OutputType = Literal["multiple_choice", "generate", "loglikelihood"]

# Scorer and ScoringContext live in capeval.scoring.base; imported here for code that reads them from tasks
__all__ = [
    "LETTERS", "Breakdown", "LoadedSamples", "OutputType", "Scorer", "ScoringContext", "Task", "refuse_all_malformed",
]


class Breakdown(Protocol):
    """A task's breakdown hook (`Task.breakdown`): after the headline metrics, `capeval run` calls it
    with the store and the run's id; it prints its tables on `console` and returns the rows
    (`capeval.judge.breakdown.BreakdownPrinter` is the judged tasks' one)."""

    def __call__(self, store: Store, run_id: str, console: Console | None = None) -> Sequence[BreakdownRow]: ...


@dataclass
class LoadedSamples:
    samples: list[Sample]
    malformed: list[str]  # one message per row that could not be read ("row 12: missing 'answer'")


def refuse_all_malformed(where: str, rows: Sequence[Mapping[str, Any]], n_read: int, malformed: Sequence[str]) -> None:
    """Stop when a split has rows but none could be read (`n_read` samples came of them): a wrong
    file or renamed columns (gsm8k rows with `problem` for `question`) would otherwise run with no
    items and succeed."""
    if n_read or not malformed:
        return
    columns = sorted({str(k) for r in rows if MALFORMED not in r for k in r if not str(k).startswith("__")})
    raise DatasetError(
        f"{where}: all {len(malformed)} rows are malformed (first: {malformed[0]})",
        f"the rows have the columns {', '.join(columns)}; the task reads the dataset's own field names "
        "(as on the hub): rename the columns or check the file"
        if columns
        else "no row could be read: check the file's format",
    )


@dataclass
class Task:
    """A benchmark. Subclass or instantiate; a YAML spec builds a TemplateTask (tasks/yaml_spec.py).

    Attributes:
        name: registry name, e.g. "mmlu".
        source: where the rows come from; `split` is evaluated, `fewshot_split` feeds exemplars.
        output_type: "multiple_choice" (choices scored by log-likelihood, or generated and a letter
            extracted when `mc_mode="generate"`), "generate" (free generation, then `scorer`) or
            "loglikelihood" (the target text's log-probability given the prompt, scored by default
            as bits per byte: lm-evaluation-harness's loglikelihood output type).
        choice_format: "letters" lists lettered choices in the prompt and scores " A", " B"...;
            "texts" scores each choice's text as the continuation (HellaSwag style).
        capabilities: capability tags (e.g. "Reasoning", "Coding") used by the analyses.
        shots: default number of exemplars; `cot_shots`: rationales for chain-of-thought exemplars
            are taken from the sample field "rationale" when present.
    """

    name: str
    source: Source
    split: str = "test"
    fewshot_split: str | None = None
    shots: int = 0
    output_type: OutputType = "generate"
    mc_mode: Literal["loglikelihood", "generate"] = "loglikelihood"
    choice_format: Literal["letters", "texts"] = "letters"
    capabilities: tuple[str, ...] = ()
    layout: PromptLayout = field(default_factory=PromptLayout)
    generation: GenerationParams = field(default_factory=GenerationParams)
    scorer: Scorer | None = None
    metrics: tuple[str, ...] = ()
    description: str = ""  # one line for `capeval tasks`
    repeats: int = 1  # samples per item (pass@k needs n > 1, with temperature > 0)
    row_to_sample_fn: Callable[[Mapping[str, Any], int, Task], Sample] | None = None
    question_fn: Callable[[Sample, Task], str] | None = None
    answer_fn: Callable[[Sample, Task, bool], str] | None = None
    # A judged task (scored by a judge model in `score_all`: CrossEval, IMPACT): what grades it, as
    # `capeval tasks` shows it (e.g. "crosseval (multi-reference, 3 refs)"); a run of it needs --judge.
    # None: the task is not judged.
    judged_by: str | None = None
    # The edited judge recipes (--recipe-file) by the recipe each replaces: a judged task scores
    # with these in place of the built-ins it names in `judge_recipe_names` (use_recipe_files sets it).
    recipe_replacements: Mapping[str, JudgeRecipe] = field(default_factory=dict, repr=False)
    # What `capeval run` prints after the headline metrics (None: nothing).
    breakdown: Breakdown | None = None
    # How the task is set up, in words for `capeval tasks` (exemplar rule, choice order, ...);
    # descriptive only: nothing reads behaviour from it.
    settings: dict[str, str | int | float] = field(default_factory=dict)
    # Paraphrased prompt layouts for prompt-sensitivity runs: PromptConfig.variant i > 0 uses
    # variants[i - 1] in place of `layout` (variant 0 is the default prompt).
    variants: tuple[PromptLayout, ...] = ()
    # The Sample.metadata key naming each item's subject or category: what `--sample` stratifies by
    # and what `--limit` is checked against (None: the task is one stratum).
    strata: str | None = None
    # Evaluate only these sample ids of `split` (None: all); `limit` then counts the kept ones.
    only_ids: frozenset[str] | None = field(default=None, repr=False)

    @property
    def judged(self) -> bool:
        """Whether a judge model scores the task (a run of it needs --judge)."""
        return self.judged_by is not None

    def judge_recipe_names(self) -> tuple[str, ...]:
        """The judge recipes the task scores with, which --recipe-file may replace (default: none)."""
        return ()

    # ---- data -------------------------------------------------------------------------------
    def row_to_sample(self, row: Mapping[str, Any], index: int) -> Sample:
        """Map one dataset row to a Sample; raise KeyError/ValueError/TypeError if malformed."""
        if self.row_to_sample_fn is None:
            raise NotImplementedError(f"task {self.name} has no field mapping")
        return self.row_to_sample_fn(row, index, self)

    def load(self, split: str | None = None, limit: int | None = None, strict: bool = False) -> LoadedSamples:
        split = split or self.split
        rows = load_rows(self.source, split)
        if self.only_ids is None or split != self.split:
            loaded = self.samples_from_rows(rows, split, limit=limit, strict=strict)
            refuse_all_malformed(f"{self.name} {split}", rows, len(loaded.samples), loaded.malformed)
            return loaded
        loaded = self.samples_from_rows(rows, split, strict=strict)
        refuse_all_malformed(f"{self.name} {split}", rows, len(loaded.samples), loaded.malformed)
        kept = [s for s in loaded.samples if s.id in self.only_ids]
        return LoadedSamples(kept if limit is None else kept[:limit], loaded.malformed)

    def samples_from_rows(
        self,
        rows: Sequence[Mapping[str, Any]],
        split: str,
        limit: int | None = None,
        strict: bool = False,
        where: str = "",
    ) -> LoadedSamples:
        """Map rows to Samples, counting the malformed ones (an error naming the row under
        `strict`); `where` is added to the messages (e.g. a subject)."""
        samples: list[Sample] = []
        malformed: list[str] = []
        seen: set[str] = set()
        label = f"{self.name} {split}" + (f" {where}" if where else "")
        for i, row in enumerate(rows):
            if limit is not None and len(samples) >= limit:
                break
            try:
                if MALFORMED in row:
                    raise ValueError(row[MALFORMED])
                s = self.row_to_sample(row, i)
                if self.output_type == "multiple_choice":
                    self._check_choices(s)
                if s.id in seen:
                    s = replace(s, id=f"{s.id}#{i}")
                seen.add(s.id)
                samples.append(s)
            except (KeyError, ValueError, TypeError, IndexError) as e:
                msg = f"{label} row {i}: {type(e).__name__}: {e}"
                if strict:
                    raise DatasetError(f"malformed row: {msg}", "fix the row or run without --strict") from None
                malformed.append(msg)
        return LoadedSamples(samples, malformed)

    def _check_choices(self, sample: Sample) -> None:
        """A multiple-choice sample needs choices, and no more than there are letters to name them
        when the prompt lists them by letter or the model answers with one."""
        if not sample.choices:
            raise ValueError("no choices")
        lettered = self.choice_format == "letters" or self.mc_mode == "generate"
        if lettered and len(sample.choices) > len(LETTERS):
            raise ValueError(f"{len(sample.choices)} choices, more than the {len(LETTERS)} letters A..Z")

    # ---- prompts ----------------------------------------------------------------------------
    def question(self, sample: Sample) -> str:
        if self.question_fn is not None:
            return self.question_fn(sample, self)
        q = str(sample.fields.get("question", ""))
        if self.output_type == "multiple_choice" and self.choice_format == "letters" and sample.choices:
            q += "\n" + "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(sample.choices))
        return q

    def answer(self, sample: Sample, cot: bool = False) -> str:
        """The exemplar answer: the letter or text of the right choice, or the target text.
        With `cot`, a rationale (field "rationale") precedes it when the dataset has one."""
        if self.answer_fn is not None:
            return self.answer_fn(sample, self, cot)
        if self.output_type == "multiple_choice" and sample.choices is not None:
            ans = LETTERS[int(sample.target)] if self.choice_format == "letters" else sample.choices[int(sample.target)]
        else:
            ans = str(sample.target)
        rationale = sample.fields.get("rationale")
        if cot and rationale:
            return f"{rationale} The answer is {ans}."
        return ans

    def continuations(self, sample: Sample) -> tuple[str, ...]:
        """The texts whose log-likelihood a sample's request asks for: each choice of a multiple-choice
        item, or the target text of a loglikelihood task."""
        if self.output_type == "loglikelihood":
            return (str(sample.target),)
        assert sample.choices is not None
        d = self.layout.target_delimiter
        if self.choice_format == "letters":
            return tuple(d + LETTERS[i] for i in range(len(sample.choices)))
        return tuple(d + c for c in sample.choices)

    def _continuations_after(self, rendered: RenderedPrompt, sample: Sample) -> tuple[str, ...]:
        """`continuations` as scored after this prompt: after chat messages the answer opens the
        assistant's turn, as the exemplars' answers do, so without the target delimiter before it
        (as lm-evaluation-harness sets target_delimiter "" under a chat template)."""
        conts = self.continuations(sample)
        d = self.layout.target_delimiter
        if isinstance(rendered.prompt, str) or not d:
            return conts
        return tuple(c.removeprefix(d) for c in conts)

    @property
    def n_variants(self) -> int:
        """How many prompt variants the task ships, the default one included."""
        return 1 + len(self.variants)

    def for_variant(self, variant: int) -> Task:
        """This task with prompt variant `variant` as its layout (0: the task itself)."""
        if variant == 0:
            return self
        if not 0 < variant < self.n_variants:
            raise TaskSpecError(
                f"task {self.name} has no prompt variant {variant}",
                f"it ships variants 0..{self.n_variants - 1}",
            )
        return replace(self, layout=self.variants[variant - 1], variants=())

    @property
    def scored_by_loglikelihood(self) -> bool:
        """Whether the task scores the log-likelihood of answers right after the prompt (no
        generation, so no room for chain of thought: --cot does not apply)."""
        return self.output_type == "loglikelihood" or (self.output_type == "multiple_choice" and self.mc_mode == "loglikelihood")

    def cot_warning(self, config: PromptConfig, pool: Sequence[Sample]) -> str | None:
        """Why --cot does not change this task's prompts, when it does not (None otherwise)."""
        if not config.cot:
            return None
        if self.scored_by_loglikelihood:
            return f"{self.name}: --cot not applied: the task is scored by the log-likelihood of its answer right after the prompt"
        shots = self.shots if config.shots is None else config.shots
        if shots > 0 and pool and all(self.answer(e, True) == self.answer(e, False) for e in pool):
            return (
                f"{self.name}: --cot changes nothing: its exemplars carry no reasoning, and the step-by-step "
                "trigger is added only to a prompt without exemplars (run with --shots 0 for it)"
            )
        return None

    def render(self, sample: Sample, exemplars: Sequence[Sample], config: PromptConfig) -> RenderedPrompt:
        if config.variant:
            return self.for_variant(config.variant).render(sample, exemplars, replace(config, variant=0))
        if config.cot and self.scored_by_loglikelihood:
            config = replace(config, cot=False)  # the scored answer must follow the prompt directly
        turns = [Turn(self.question(e), self.answer(e, config.cot)) for e in exemplars]
        return render(turns, Turn(self.question(sample)), self.layout, config)

    def exemplars_for(self, sample: Sample, pool: Sequence[Sample], config: PromptConfig) -> list[Sample]:
        k = self.shots if config.shots is None else config.shots
        return select_exemplars(pool, k, config.seed, exclude_id=sample.id)

    def fewshot_warning(self, shots: int) -> str | None:
        """What the run should warn about where `shots` exemplars come from (default: nothing)."""
        return None

    def requests(self, sample: Sample, rendered: RenderedPrompt, config: PromptConfig) -> list[Request]:
        """The model calls one sample needs (most tasks: one)."""
        if config.variant:
            return self.for_variant(config.variant).requests(sample, rendered, replace(config, variant=0))
        if self.scored_by_loglikelihood:
            return [
                Request(
                    kind="loglikelihood",
                    prompt=rendered.prompt,
                    continuations=self._continuations_after(rendered, sample),
                    shared_prefix=rendered.shared_prefix,
                    task=self.name,
                    sample_id=sample.id,
                )
            ]
        params = self.generation
        return [
            Request(
                kind="generate",
                prompt=rendered.prompt,
                params=params,
                shared_prefix=rendered.shared_prefix,
                repeat=r,
                task=self.name,
                sample_id=sample.id,
            )
            for r in range(self.repeats)
        ]

    # ---- scoring ----------------------------------------------------------------------------
    def score(self, sample: Sample, responses: Sequence[Response]) -> Score:
        if self.scorer is None:
            from capeval.scoring import default_scorer

            return default_scorer(self)(sample, responses, self)
        return self.scorer(sample, responses, self)

    def score_all(
        self, samples: Sequence[Sample], responses: Sequence[Sequence[Response]], ctx: ScoringContext
    ) -> list[Score]:
        """Score every sample of the task. Override for tasks scored in bulk (a judge pass).
        A Score whose metadata has `unsupported: True` (e.g. needs images the model lacks) is left
        out of the metrics and counted separately."""
        return [self.score(s, r) for s, r in zip(samples, responses)]

    def group_metrics(self, scores: Sequence[Score]) -> list[MetricResult]:
        """Extra aggregates beside the task's overall metrics (e.g. per subject and macro average);
        the engine appends them to the run's metrics. Default: none."""
        return []

    def info(self) -> dict[str, Any]:
        """What `capeval tasks` shows."""
        return {
            "name": self.name,
            "source": self.source.describe(),
            "split": self.split,
            "shots": self.shots,
            "type": self.output_type if self.output_type != "multiple_choice" else f"mc/{self.mc_mode}",
            "metrics": ", ".join(self.metrics),
            "capabilities": ", ".join(self.capabilities),
            "description": self.description,
            **({"strata": self.strata} if self.strata else {}),
            **({"prompt variants": self.n_variants} if self.variants else {}),
            **({"judge": self.judged_by} if self.judged_by is not None else {}),
            **({"breakdown": repr(self.breakdown)} if self.breakdown is not None else {}),
            **self.settings,
        }
