"""Subsets of a task's items: seeded stratified samples (`--sample`) and what a first-N `--limit` covers.

A task names its strata with `Task.strata`, the Sample.metadata key holding each item's subject or
category (MMLU's subject, MT-Bench's category); `--stratify FIELD` names another metadata key or
row field. A task without strata is one stratum, so `--sample` is then a plain seeded sample.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from capeval.errors import CapevalError
from capeval.tasks.base import LoadedSamples, Task
from capeval.types import Sample


@dataclass(frozen=True)
class Subset:
    """Which of a task's items a run evaluated, when it did not evaluate all of them.

    selection: "sample" (seeded stratified sample) or "limit" (the first N, per subject on
    multi-subject tasks). per_stratum: stratum -> [items evaluated, items in the task]."""

    selection: str
    n: int
    total: int
    stratify: str | None = None
    seed: int | None = None
    per_stratum: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The short name a metric carries: "sample" or "first" (as in "sample 40/80")."""
        return "sample" if self.selection == "sample" else "first"

    @property
    def strata_covered(self) -> int:
        return sum(1 for k, _ in self.per_stratum.values() if k > 0)

    @property
    def strata_total(self) -> int:
        return len(self.per_stratum)

    def describe(self) -> str:
        """One phrase: "stratified sample: 40 of 80 items (all 8 category values, seed 1234)"."""
        if self.selection == "sample":
            how = "stratified sample" if self.stratify else "seeded sample"
        else:
            how = "first items (--limit)"
        parts = []
        if self.stratify:
            covered = "all" if self.strata_covered == self.strata_total else f"{self.strata_covered} of"
            parts.append(f"{covered} {self.strata_total} {self.stratify} values")
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        return f"{how}: {self.n} of {self.total} items" + (f" ({', '.join(parts)})" if parts else "")

    def to_config(self) -> dict[str, Any]:
        return {
            "selection": self.selection,
            "n": self.n,
            "total": self.total,
            "stratify": self.stratify,
            "seed": self.seed,
            "strata_covered": self.strata_covered,
            "strata_total": self.strata_total,
            "per_stratum": {k: list(v) for k, v in self.per_stratum.items()},
        }

    @classmethod
    def from_config(cls, d: Mapping[str, Any]) -> Subset:
        return cls(
            d["selection"], int(d["n"]), int(d["total"]), d.get("stratify"), d.get("seed"),
            {k: (int(v[0]), int(v[1])) for k, v in (d.get("per_stratum") or {}).items()},
        )


def stratum_of(sample: Sample, key: str) -> str | None:
    """The sample's stratum: its metadata `key`, else its row field `key` (None when it has neither)."""
    value = sample.metadata.get(key, sample.fields.get(key))
    return None if value is None else str(value)


def strata_key(task_name: str, samples: Sequence[Sample], key: str | None, named: bool) -> str | None:
    """The key to stratify by; a key the user `named` must be present on the task's items."""
    if key is None or not samples:
        return key
    if any(stratum_of(s, key) is not None for s in samples):
        return key
    if not named:
        return None
    keys = sorted({*samples[0].metadata, *samples[0].fields})
    raise CapevalError(
        f"--stratify: task {task_name}'s items have no field '{key}'",
        f"its items' fields: {', '.join(keys)} (or --stratify TASK=FIELD for one task only)",
    )


def by_stratum(samples: Sequence[Sample], key: str | None) -> dict[str, list[Sample]]:
    """Samples grouped by stratum in dataset order (one group "all" without a key)."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault((stratum_of(s, key) or "(none)") if key else "all", []).append(s)
    return groups


def allocate(sizes: Mapping[str, int], n: int, seed: int = 0) -> dict[str, int]:
    """How many items each stratum contributes to a sample of n.

    With at least one item per stratum possible (n >= number of strata): one from every stratum,
    then the other n - k shared in proportion to stratum size, largest remainders first (ties:
    larger stratum, then a seeded order), never more than a stratum holds. With fewer items than strata:
    one item from each of n strata drawn at random (seeded)."""
    total = sum(sizes.values())
    if n >= total:
        return dict(sizes)
    names = [s for s in sizes if sizes[s] > 0]
    if n < len(names):
        chosen = set(random.Random(f"{seed}:strata").sample(sorted(names), n))
        return {s: int(s in chosen) for s in sizes}
    rest = n - len(names)
    quota = {s: rest * sizes[s] / total for s in names}
    out = {s: 1 + int(quota[s]) for s in names}
    rank = {s: i for i, s in enumerate(random.Random(f"{seed}:ties").sample(sorted(names), len(names)))}
    order = sorted(names, key=lambda s: (-(quota[s] - int(quota[s])), -sizes[s], rank[s]))
    left = n - sum(out.values())
    while left > 0:
        for s in order:
            if left and out[s] < sizes[s]:
                out[s] += 1
                left -= 1
    return {s: out.get(s, 0) for s in sizes}


def stratified_sample(samples: Sequence[Sample], n: int, seed: int, key: str | None) -> list[Sample]:
    """A seeded sample of n items, allocated over strata by `allocate`, in dataset order.

    Each stratum's items are drawn from that stratum's own seeded order, so the sample depends
    only on the data, n, seed and key: the same items for every model."""
    groups = by_stratum(samples, key)
    counts = allocate({g: len(items) for g, items in groups.items()}, n, seed)
    keep: set[str] = set()
    for g, items in groups.items():
        order = list(range(len(items)))
        random.Random(f"{seed}:{g}").shuffle(order)
        keep.update(items[i].id for i in order[: counts[g]])
    return [s for s in samples if s.id in keep]


def describe_subset(
    selection: str, chosen: Sequence[Sample], everything: Sequence[Sample], key: str | None, seed: int | None
) -> Subset:
    """The Subset record of `chosen` among the task's `everything`."""
    totals = by_stratum(everything, key)
    picked = by_stratum(chosen, key)
    per = {g: (len(picked.get(g, [])), len(items)) for g, items in totals.items()} if key else {}
    return Subset(selection, len(chosen), len(everything), key, seed, per)


def limit_warning(task_name: str, limit: int, subset: Subset) -> str | None:
    """The warning for a `--limit` whose first items leave out some of the task's strata."""
    if not subset.stratify or subset.strata_covered >= subset.strata_total:
        return None
    covered = [g for g, (k, _) in subset.per_stratum.items() if k]
    shown = ", ".join(covered[:5]) + (", ..." if len(covered) > 5 else "")
    return (
        f"{task_name}: --limit {limit} takes the first {subset.n} items, which cover {subset.strata_covered} "
        f"of its {subset.strata_total} {subset.stratify} values ({shown}), so its metrics do not represent the "
        f"task; --sample {subset.n} draws a seeded sample stratified by {subset.stratify}"
    )


def choose_items(
    task: Task,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    stratify: str | None = None,
    strict: bool = False,
) -> tuple[LoadedSamples, Subset | None, str | None]:
    """The items a run evaluates, the Subset record when they are not all of the task's, and the
    warning for a `--limit` that leaves strata out. `stratify` (a metadata key or row field the
    user named) replaces the task's own `strata`."""
    if limit is not None and sample is not None:
        raise CapevalError("--limit and --sample both choose the items; give one", "--sample N draws a stratified sample of N")
    for flag, value in (("--limit", limit), ("--sample", sample)):
        if value is not None and value < 1:
            raise CapevalError(f"{flag} must be at least 1, got {value}")
    everything = task.load(strict=strict)
    if limit is None and sample is None:
        return everything, None, None
    key = strata_key(task.name, everything.samples, stratify or task.strata, named=stratify is not None)
    if sample is not None:
        chosen = LoadedSamples(stratified_sample(everything.samples, sample, seed, key), everything.malformed)
    else:
        chosen = task.load(limit=limit, strict=strict)
    if len(chosen.samples) >= len(everything.samples):
        return chosen, None, None
    subset = describe_subset("sample" if sample is not None else "limit", chosen.samples, everything.samples, key,
                             seed if sample is not None else None)
    warning = limit_warning(task.name, limit, subset) if limit is not None else None
    return chosen, subset, warning
