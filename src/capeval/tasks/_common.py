"""Shared pieces of the benchmark task files: multi-subject loading, exemplar samplers, breakdowns."""

from __future__ import annotations

import functools
import importlib
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from capeval.analysis.stats import bootstrap_ci, small_sample_warning
from capeval.errors import DatasetError
from capeval.prompting import PromptConfig, RenderedPrompt
from capeval.scoring.base import Scorer
from capeval.tasks.base import LoadedSamples, Task, refuse_all_malformed
from capeval.tasks.sources import (
    LOCAL_EXTENSIONS,
    MALFORMED,
    Source,
    file_stem,
    find_split_files,
    load_rows,
    read_file,
    read_local_files,
)
from capeval.types import MetricResult, Response, Sample, Score

SUBJECT_KEY = "__subject"  # added to every row of a multi-subject task: the config it came from


def lazy_scorer(factory: str, module: str = "capeval.scoring", **options: Any) -> Scorer:
    """A scorer built on first use from `module.factory(**options)`.

    Task files are imported when the registry lists tasks; deferring the scoring import keeps
    `capeval tasks` fast and free of the scorers' optional dependencies (math-verify, sympy)."""
    built: list[Scorer] = []

    def score(sample: Sample, responses: Sequence[Response], task: Task) -> Score:
        if not built:
            built.append(getattr(importlib.import_module(module), factory)(**options))
        return built[0](sample, responses, task)

    score.__name__ = factory
    return score


@functools.lru_cache(maxsize=32)
def seeded_order(n: int, seed: int) -> tuple[int, ...]:
    """A fixed permutation of range(n); cached because every item of a task walks the same one."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return tuple(order)


@dataclass
class FewShotTask(Task):
    """A Task whose exemplars skip the evaluated item only when the pool is the evaluated split
    (ids are row positions, so "test/3" and "train/3" share an id but are different items), and
    skip pool items that `conflicts` with the item (e.g. the same DROP passage)."""

    conflicts: Callable[[Sample, Sample], bool] | None = None

    @property
    def single_file(self) -> bool:
        """Whether the rows come from one local file, which serves every split (`--data TASK=FILE`)."""
        return self.source.kind == "local" and Path(self.source.path).is_file()

    @property
    def pool_is_eval_split(self) -> bool:
        # a single local file serves every split, so its "dev" pool holds the evaluated items too
        return self.single_file or self.fewshot_split in (None, self.split)

    def fewshot_warning(self, shots: int) -> str | None:
        # deliberate (a lone file is all the user gave), but the prompts are then not the paper's
        if shots <= 0 or not self.single_file or self.fewshot_split in (None, self.split):
            return None
        return (
            f"{self.name}: exemplars drawn from the evaluated file itself: {self.source.path} serves the "
            f"{self.split} items and the {self.fewshot_split} exemplars (an item is never its own exemplar); "
            f"give a folder with {self.split} and {self.fewshot_split} files to draw them from the {self.fewshot_split} split"
        )

    def exemplars_for(self, sample: Sample, pool: Sequence[Sample], config: PromptConfig) -> list[Sample]:
        k = self.shots if config.shots is None else config.shots
        return self.draw(sample, pool, k, config.seed)

    def draw(
        self, sample: Sample, pool: Sequence[Sample], k: int, seed: int, first_n: bool = False
    ) -> list[Sample]:
        if k <= 0:
            return []
        same_split = self.pool_is_eval_split

        def allowed(e: Sample) -> bool:
            if same_split and e.id == sample.id:
                return False
            return self.conflicts is None or not self.conflicts(e, sample)

        if first_n:
            return [e for e in pool if allowed(e)][:k]
        chosen: list[Sample] = []
        for i in seeded_order(len(pool), seed):
            if allowed(pool[i]):
                chosen.append(pool[i])
                if len(chosen) == k:
                    break
        return chosen


@dataclass
class SubjectTask(FewShotTask):
    """A benchmark split into subjects (MMLU's 57, CMMLU's 67, C-Eval's 52, BBH's 27, MATH's 7).

    Each subject is a hub config (or a row field, or a subfolder of a local copy, or a file of a
    local split folder named after it: `test/<subject>.csv`). Samples carry
    their subject in metadata; exemplars come from the same subject; `group_metrics` reports each
    subject's accuracy and the macro average (mean over subjects) beside the micro average.

    Attributes:
        subjects: config names evaluated, in order.
        benchmark_subjects: every subject of the benchmark (a single-subject task's too), so that a
            split folder's files named after the other subjects are recognised, and skipped
            (`subject_names`' keys count as well).
        all_config: a hub config holding every subject at once (MMLU's "all"): one download.
        subject_field: row field naming the subject when one file holds many subjects.
        subject_of: maps that field's value to a config name (MATH's "Counting & Probability"
            -> "counting_and_probability"); default: the value itself.
        subject_names: display names for `{subject}` in the description (default: config name
            with spaces).
        sampler: "first_n" takes the first k exemplars of the subject in dataset order (as the
            MMLU, CMMLU and C-Eval papers); "seeded" draws them in a seeded order.
        holdout_first: the first N items of each subject are exemplars and are not evaluated
            (BBH as INSTRUCTEVAL ran it: it has no separate few-shot split).
        csv_columns: the columns of the benchmark's original header-less CSV files, read as such
            when a local CSV's first row does not name the first of them (`sources.read_file`).
    """

    subjects: tuple[str, ...] = ()
    benchmark_subjects: tuple[str, ...] = ()
    all_config: str | None = None
    subject_field: str | None = None
    subject_of: Callable[[str], str] | None = None
    subject_names: Mapping[str, str] = field(default_factory=dict)
    sampler: Literal["first_n", "seeded"] = "seeded"
    holdout_first: int = 0
    csv_columns: tuple[str, ...] | None = None
    strata: str | None = "subject"
    _heldout: dict[str, list[Sample]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _by_subject: tuple[tuple[int, int], dict[Any, list[Sample]]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    # ---- data -------------------------------------------------------------------------------
    def subject_rows(self, split: str) -> list[tuple[str, list[dict[str, Any]]]]:
        """(subject, rows) for every subject of this task that the source holds."""
        src = self.source
        if src.kind == "hub":
            if len(self.subjects) > 1 and self.all_config and self.subject_field:
                return self._split_by_field(load_rows(replace(src, name=self.all_config), split))
            return [(s, load_rows(replace(src, name=s), split)) for s in self.subjects]
        if src.kind != "local":
            return self._split_by_field(load_rows(src, split))
        path = Path(src.path)
        if path.is_dir():
            present = [s for s in self.subjects if (path / s).is_dir()]
            if present:
                return self._subject_folders(path, present, split)
            if self.all_config and (path / self.all_config).is_dir():
                return self._split_files(read_local_files(path, split, self.all_config, self.csv_columns), split)
        return self._split_files(read_local_files(path, split, columns=self.csv_columns), split)

    def _subject_folders(self, path: Path, present: list[str], split: str) -> list[tuple[str, list[dict[str, Any]]]]:
        """(subject, rows) of one subfolder per subject. A subfolder without the split takes its
        subject's rows of the root's split files (by subject field or file name), never the other
        subjects' rows: the root's `dev.jsonl` of every subject would give exemplars of them all."""
        own = {s: files for s in present if (files := find_split_files(path / s, split, None))}
        lacking = [s for s in present if s not in own]
        from_root: dict[str, list[dict[str, Any]]] = {}
        if lacking:
            root_files = find_split_files(path, split, None)
            if not root_files:
                raise DatasetError(
                    f"no file for split '{split}' under {path / lacking[0]} or {path}",
                    f"expected e.g. {path / lacking[0] / (split + '.jsonl')} (jsonl, json, csv, tsv or parquet)",
                )
            try:
                from_root = dict(self._split_files([(f, read_file(f, self.csv_columns)) for f in root_files], split))
            except DatasetError as e:
                raise DatasetError(
                    f"{self.name}: {path / lacking[0]} has no '{split}' file, and its subject's rows cannot be "
                    f"told apart in {path}'s: {e.args[0]}",
                    f"give {path / lacking[0] / (split + '.jsonl')}, or rows with a subject field in {path}",
                ) from None
        out: list[tuple[str, list[dict[str, Any]]]] = []
        for s in present:
            if s in own:
                out.append((s, [r for f in own[s] for r in read_file(f, self.csv_columns)]))
            elif s in from_root:
                out.append((s, from_root[s]))
        return out

    def _split_files(
        self, files: list[tuple[Path, list[dict[str, Any]]]], split: str
    ) -> list[tuple[str, list[dict[str, Any]]]]:
        """(subject, rows) of a split's files: by the rows' subject field where they have one, else
        by each file's name, as the CMMLU and C-Eval repositories lay out a split
        (`test/agronomy.csv`, `val/computer_network_val.csv`: rows without a subject column)."""
        rows = [r for _, file_rows in files for r in file_rows]
        if self.subject_field is not None and any(self.subject_field in r for r in rows):
            return self._split_by_field(rows)
        named = [(f, self._subject_of_file(f, split), file_rows) for f, file_rows in files]
        if len(named) == 1 and named[0][1] is None:
            return self._split_by_field(rows)  # one file, not named after a subject: the task's rows
        unknown = [f for f, subject, _ in named if subject is None]
        if unknown:
            raise DatasetError(
                f"{self.name}: cannot tell the subject of {unknown[0]}"
                + (f" (and {len(unknown) - 1} more files)" if len(unknown) > 1 else "")
                + ": its rows have no subject field and its name is not one of the task's subjects",
                f"name each file of the split after its subject (<split>/<subject>.csv or "
                f"<split>/<subject>_{split}.csv, e.g. {split}/{self.subjects[0]}.csv), "
                "or give one subfolder per subject (<folder>/<subject>/<split>.jsonl)",
            )
        by_subject: dict[str, list[dict[str, Any]]] = {}
        for _, subject, file_rows in named:
            by_subject.setdefault(str(subject), []).extend(file_rows)
        if not any(s in by_subject for s in self.subjects):
            raise DatasetError(
                f"{self.name}: no file of split '{split}' is named after "
                + (f"its subject {self.subjects[0]}" if len(self.subjects) == 1 else "one of its subjects")
                + f" (found {', '.join(sorted(by_subject))})",
                f"expected e.g. {split}/{self.subjects[0]}.csv",
            )
        return [(s, by_subject[s]) for s in self.subjects if s in by_subject]

    def _subject_of_file(self, path: Path, split: str) -> str | None:
        """The subject a data file is named after (`agronomy.csv`, `agronomy_test.csv`), if any."""
        known = {*self.benchmark_subjects, *self.subjects, *self.subject_names}
        stem = file_stem(path)
        for name in (stem, stem.removesuffix(f"_{split}")):
            if name in known:
                return name
        return None

    def _split_by_field(self, rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
        if len(self.subjects) == 1 and (
            self.subject_field is None or not any(self.subject_field in r for r in rows)
        ):
            return [(self.subjects[0], rows)]
        if self.subject_field is None:
            raise DatasetError(
                f"{self.name}: cannot tell the subjects apart in one file",
                "give a folder with one subfolder per subject (e.g. <folder>/<subject>/test.jsonl)",
            )
        wanted = set(self.subjects)
        by_subject: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            # a malformed line has no subject: keep it (counted as malformed) under the first subject
            s = str(r.get(self.subject_field, self.subjects[0] if MALFORMED in r else ""))
            if self.subject_of is not None and MALFORMED not in r:
                s = self.subject_of(s)
            if s in wanted:
                by_subject.setdefault(s, []).append(r)
        return [(s, by_subject[s]) for s in self.subjects if s in by_subject]

    def load(self, split: str | None = None, limit: int | None = None, strict: bool = False) -> LoadedSamples:
        split = split or self.split
        samples: list[Sample] = []
        malformed: list[str] = []
        every_row: list[dict[str, Any]] = []
        n_read = 0
        for subject, rows in self.subject_rows(split):
            every_row += rows
            part = self.samples_from_rows([{**r, SUBJECT_KEY: subject} for r in rows], split, strict=strict, where=subject)
            malformed += part.malformed
            n_read += len(part.samples)
            subject_samples = part.samples
            if self.holdout_first and split == self.split:
                self._heldout[subject] = subject_samples[: self.holdout_first]
                subject_samples = subject_samples[self.holdout_first :]
            # --limit counts per subject, as lm-eval limits each subtask of a group: the first N
            # overall would all come from the first subject and leave the macro average of one
            samples += subject_samples if limit is None else subject_samples[:limit]
        refuse_all_malformed(f"{self.name} {split}", every_row, n_read, malformed)
        return LoadedSamples(samples, malformed)

    # ---- prompts ----------------------------------------------------------------------------
    def subject_display(self, subject: str) -> str:
        return self.subject_names.get(subject, subject.replace("_", " "))

    def exemplars_for(self, sample: Sample, pool: Sequence[Sample], config: PromptConfig) -> list[Sample]:
        k = self.shots if config.shots is None else config.shots
        if k <= 0:
            return []
        subject = sample.metadata.get("subject")
        if self.holdout_first:  # held-out items are never evaluated: no overlap to skip
            return self._heldout.get(str(subject), [])[:k]
        same = self._pool_of(subject, pool)
        return self.draw(sample, same, k, config.seed, first_n=self.sampler == "first_n")

    def _pool_of(self, subject: Any, pool: Sequence[Sample]) -> list[Sample]:
        """The pool's items of one subject (grouped once per pool: MATH has 7,500 train items)."""
        key = (id(pool), len(pool))
        if self._by_subject is None or self._by_subject[0] != key:
            groups: dict[Any, list[Sample]] = {}
            for e in pool:
                groups.setdefault(e.metadata.get("subject"), []).append(e)
            self._by_subject = (key, groups)
        return self._by_subject[1].get(subject, [])

    def render(self, sample: Sample, exemplars: Sequence[Sample], config: PromptConfig) -> RenderedPrompt:
        if config.variant or "{subject}" not in self.layout.description:
            return super().render(sample, exemplars, config)
        subject = self.subject_display(str(sample.metadata.get("subject", "")))
        layout = replace(self.layout, description=self.layout.description.replace("{subject}", subject))
        return Task.render(replace(self, layout=layout), sample, exemplars, config)

    # ---- scoring ----------------------------------------------------------------------------
    def score(self, sample: Sample, responses: Sequence[Response]) -> Score:
        s = super().score(sample, responses)
        return replace(s, metadata={**dict(s.metadata), "subject": sample.metadata.get("subject")})

    def group_metrics(self, scores: Sequence[Score]) -> list[MetricResult]:
        if len(self.subjects) < 2:
            return []
        return group_breakdown(self.name, scores, key=lambda s: s.metadata.get("subject"))


def group_breakdown(
    task: str, scores: Sequence[Score], key: Callable[[Score], Any], seed: int = 0
) -> list[MetricResult]:
    """Per-group metrics (task "<task>/<group>") and the macro average over groups
    (metric "<metric>_macro"), whose 95% CI comes from a bootstrap stratified by group."""
    groups: dict[str, list[Score]] = {}
    for s in scores:
        groups.setdefault(str(key(s)), []).append(s)
    names: list[str] = []
    for s in scores:
        names += [m for m in s.values if m not in names]
    out: list[MetricResult] = []
    for g, members in groups.items():
        unparsed = sum(1 for s in members if not s.parsed) / len(members)
        for m in names:
            mean, lo, hi = bootstrap_ci([float(s.values.get(m, 0.0)) for s in members], seed=seed)
            out.append(MetricResult(f"{task}/{g}", m, mean, lo, hi, len(members), unparsed, None))
    if len(groups) > 1:
        rng = np.random.default_rng(seed)
        unparsed_all = sum(1 for s in scores if not s.parsed) / len(scores)
        for m in names:
            per_group = [
                np.array([float(s.values.get(m, 0.0)) for s in members]) for members in groups.values()
            ]
            macro = float(np.mean([x.mean() for x in per_group]))
            boots = np.mean(
                [x[rng.integers(0, x.size, size=(1000, x.size))].mean(axis=1) for x in per_group], axis=0
            )
            lo, hi = (float(v) for v in np.quantile(boots, [0.025, 0.975]))
            out.append(
                MetricResult(
                    task,
                    f"{m}_macro",
                    macro,
                    lo,
                    hi,
                    len(scores),
                    unparsed_all,
                    small_sample_warning(len(scores), lo, hi),
                )
            )
    return out


def choice_list(values: Any) -> Iterable[Any]:
    """A row's choices as given; text or a mapping makes the row malformed (iterating them would
    read a CSV cell "['a', 'b']" as its characters, or ARC's {"text": [...], "label": [...]} as its keys)."""
    if isinstance(values, Mapping):
        raise TypeError(f"choices must be a list, got a mapping with keys {sorted(map(str, values))}")
    if isinstance(values, (str, bytes)):
        raise TypeError(f"choices must be a list, got {type(values).__name__} {values[:40]!r}")
    return values


def choice_rows(values: Iterable[Any]) -> tuple[str, ...]:
    """Choices as stripped strings; an empty or missing choice makes the row malformed, and so does
    text or a mapping in place of a list (`choice_list`)."""
    out = tuple(str(v).strip() if v is not None else "" for v in choice_list(values))
    if not out or any(not c for c in out):
        raise ValueError(f"empty choice in {out!r}")
    return out


def letter_index(letter: Any, n: int) -> int:
    """Index of an answer letter ("A".."D"); anything else makes the row malformed."""
    s = str(letter).strip().upper()
    if len(s) != 1 or not "A" <= s < chr(ord("A") + n):
        raise ValueError(f"answer {letter!r} is not one of A..{chr(ord('A') + n - 1)}")
    return ord(s) - ord("A")


def local_or(source: Source, data: str | None) -> Source:
    """The hub source, or a local file/folder with the hub dataset's field names."""
    if data is None:
        return source
    if not Path(data).expanduser().exists():
        raise DatasetError(
            f"local dataset path does not exist: {data}",
            f"expected a file ({', '.join(LOCAL_EXTENSIONS)}) or a folder",
        )
    return Source("local", str(Path(data).expanduser()), source.name)


__all__ = [
    "SUBJECT_KEY",
    "FewShotTask",
    "SubjectTask",
    "choice_list",
    "choice_rows",
    "group_breakdown",
    "lazy_scorer",
    "letter_index",
    "local_or",
    "seeded_order",
]
