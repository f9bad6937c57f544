"""Subsets of a task: the stratified `--sample` allocation, and what a first-N `--limit` covers."""

from __future__ import annotations

from collections import Counter

import pytest

from capeval.errors import CapevalError
from capeval.tasks import get_task
from capeval.tasks.subsets import allocate, choose_items, stratified_sample
from capeval.types import Sample


def test_allocate_one_per_stratum_then_proportional():
    # 100 items in three strata of 60/30/10; n=10: one each, then 7 shared 60:30:10 -> 4.2, 2.1, 0.7
    assert allocate({"a": 60, "b": 30, "c": 10}, 10) == {"a": 5, "b": 3, "c": 2}
    # fewer items than strata: one from each of n strata, the rest none
    small = allocate({"a": 60, "b": 30, "c": 10}, 2, seed=3)
    assert sorted(small.values()) == [0, 1, 1]
    # never more than a stratum holds; the whole task when n reaches its size
    assert allocate({"a": 1, "b": 9}, 9) == {"a": 1, "b": 8}
    assert allocate({"a": 1, "b": 9}, 50) == {"a": 1, "b": 9}
    assert sum(allocate({f"s{i}": i + 1 for i in range(57)}, 100).values()) == 100


def _items(sizes: dict[str, int]) -> list[Sample]:
    return [Sample(f"{g}{i}", "t", {}, metadata={"category": g}) for g, n in sizes.items() for i in range(n)]


def test_stratified_sample_is_seeded_and_in_dataset_order():
    items = _items({"a": 40, "b": 40})
    first = stratified_sample(items, 10, seed=1, key="category")
    assert [s.id for s in first] == [s.id for s in stratified_sample(items, 10, seed=1, key="category")]
    assert Counter(s.metadata["category"] for s in first) == {"a": 5, "b": 5}
    assert [s.id for s in first] == [s.id for s in items if s in first]  # dataset order kept
    assert [s.id for s in first] != [s.id for s in stratified_sample(items, 10, seed=2, key="category")]


def test_limit_on_a_category_sorted_task_warns_and_names_sample():
    # MT-Bench stores its 80 questions sorted by category: the first 20 are writing and roleplay
    task = get_task("mtbench-category")
    loaded, subset, warning = choose_items(task, limit=20)
    assert len(loaded.samples) == 20 and subset is not None
    assert (subset.n, subset.total, subset.strata_covered, subset.strata_total) == (20, 80, 2, 8)
    assert warning == (
        "mtbench-category: --limit 20 takes the first 20 items, which cover 2 of its 8 category values "
        "(writing, roleplay), so its metrics do not represent the task; --sample 20 draws a seeded sample "
        "stratified by category"
    )


def test_sample_covers_every_category_and_records_it():
    task = get_task("mtbench-category")
    loaded, subset, warning = choose_items(task, sample=20, seed=1234)
    assert warning is None and subset is not None
    assert Counter(s.metadata["category"] for s in loaded.samples) == {
        c: k for c, (k, _) in subset.per_stratum.items()
    }
    assert subset.strata_covered == 8 and all(k in (2, 3) for k, _ in subset.per_stratum.values())
    assert subset.describe() == "stratified sample: 20 of 80 items (all 8 category values, seed 1234)"
    # the whole task when N reaches its size: no subset to report
    _, none, _ = choose_items(task, sample=500, seed=1)
    assert none is None


def test_stratify_by_a_named_field_and_errors():
    task = get_task("humaneval")  # no strata of its own: a plain seeded sample
    _, subset, _ = choose_items(task, sample=5, seed=1)
    assert subset is not None and subset.stratify is None
    assert subset.describe() == "seeded sample: 5 of 164 items (seed 1)"
    with pytest.raises(CapevalError, match="items have no field 'colour'"):
        choose_items(task, sample=5, stratify="colour")
    with pytest.raises(CapevalError, match="--limit and --sample both choose the items"):
        choose_items(task, limit=5, sample=5)
    with pytest.raises(CapevalError, match="--sample must be at least 1"):
        choose_items(task, sample=0)
