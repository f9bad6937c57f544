"""What annotators are shown: one run's response to rate, or two runs' responses to one sample to compare."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from capeval.errors import CapevalError, StoreError
from capeval.report.data import response_texts
from capeval.store import Store


class WebError(CapevalError):
    """Runs or settings the annotators' web app cannot serve."""


@dataclass(frozen=True)
class Response:
    """One run's answer to one sample, as an annotator sees it (the model's name is kept server-side)."""

    run_id: str
    model_id: str
    task: str
    sample_id: str
    prompt: str
    text: str
    reference: str | None


@dataclass(frozen=True)
class Battle:
    """Two runs of different models that answered the same sample id of the same task."""

    first: Response
    second: Response

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.first.task, self.first.sample_id, self.first.run_id, self.second.run_id)

    @property
    def prompt_id(self) -> str:
        return prompt_id(self.first.task, self.first.sample_id)


def prompt_id(task: str, sample_id: str) -> str:
    """How a battle names its prompt in pairwise_votes.prompt_id."""
    return f"{task}/{sample_id}"


def _reference(target: Any) -> str | None:
    if isinstance(target, bool) or target is None:
        return None
    if isinstance(target, (str, int, float)):
        return str(target)
    if isinstance(target, list) and target and all(isinstance(t, str) for t in target):
        return " | ".join(target)
    return None


def resolve_run(store: Store, given: str) -> Any:
    """The runs row of a run id or of an unambiguous prefix of one (`Store.run`)."""
    try:
        row = store.run(given)
    except StoreError as e:  # an ambiguous prefix (or a store that cannot be read)
        raise WebError(str(e.args[0]), e.hint) from None
    if row is not None:
        return row
    known = ", ".join(r["run_id"] for r in store.runs(5))
    raise WebError(f"no run '{given}' in {store.path}", f"recent runs: {known}" if known else "the store has no runs")


def load_responses(store: Store, run_ids: Sequence[str]) -> list[Response]:
    """Every sample of the given runs (id prefixes allowed) that has an output to show."""
    if not run_ids:
        raise WebError("no runs to annotate", "pass --run RUN (see `capeval runs list`)")
    out: list[Response] = []
    seen: set[str] = set()
    for given in run_ids:
        row = resolve_run(store, given)
        run_id, model_id = row["run_id"], row["model_id"]
        if run_id in seen:
            continue
        seen.add(run_id)
        n_before = len(out)
        for s in store.iter_samples(run_id):
            texts = [t for t in response_texts(s["response"]) if t.strip() and not t.startswith("[call failed")]
            if texts:
                # a sample with several outputs (pass@k) is shown and judged by its first one
                out.append(Response(run_id, model_id, s["task"], s["sample_id"], s["prompt"], texts[0], _reference(s["target"])))
        if len(out) == n_before:
            raise WebError(f"run {run_id} has no sample with an output to show")
    return out


def battles_of(responses: Sequence[Response]) -> list[Battle]:
    """Every pair of runs of different models over the samples both answered (same task, same sample id).

    Runs of the same model are not paired: the arena rates models, and a model against itself is no battle."""
    by_sample: dict[tuple[str, str], list[Response]] = {}
    for r in responses:
        by_sample.setdefault((r.task, r.sample_id), []).append(r)
    out = []
    for group in by_sample.values():
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                if a.model_id != b.model_id:
                    out.append(Battle(a, b))
    return out


@dataclass
class ItemPool:
    """The items of one annotation session and the choice of what each annotator sees next.

    The store decides what an annotator has done, so a restarted app never serves an item twice;
    among the items an annotator has not done, those with the fewest answers from anyone come
    first (coverage before depth), ties broken at random."""

    store: Store
    ratings: list[Response]
    battles: list[Battle]
    run_ids: tuple[str, ...]

    @classmethod
    def load(cls, store: Store, run_ids: Sequence[str]) -> ItemPool:
        responses = load_responses(store, run_ids)
        return cls(store, responses, battles_of(responses), tuple(dict.fromkeys(r.run_id for r in responses)))

    def _marks(self) -> str:
        return ",".join("?" * len(self.run_ids))

    def rated_keys(self, annotator_id: str | None = None) -> Counter[tuple[str, str, str]]:
        """(run, task, sample) -> number of ratings, by one annotator or by everyone."""
        sql = f"SELECT run_id, task, sample_id FROM human_ratings WHERE run_id IN ({self._marks()})"
        params: list[Any] = list(self.run_ids)
        if annotator_id is not None:
            sql += " AND annotator_id = ?"
            params.append(annotator_id)
        return Counter((r["run_id"], r["task"], r["sample_id"]) for r in self.store.query(sql, params))

    def voted_keys(self, annotator_id: str | None = None) -> Counter[tuple[str, str, str, str]]:
        """(task, sample, run, run) in this pool's order -> number of human votes."""
        sql = (
            f"SELECT prompt_id, run_a, run_b FROM pairwise_votes WHERE source = 'human' "
            f"AND run_a IN ({self._marks()}) AND run_b IN ({self._marks()})"
        )
        params: list[Any] = [*self.run_ids, *self.run_ids]
        if annotator_id is not None:
            sql += " AND annotator_id = ?"
            params.append(annotator_id)
        by_prompt = {(b.prompt_id, frozenset((b.first.run_id, b.second.run_id))): b.key for b in self.battles}
        out: Counter[tuple[str, str, str, str]] = Counter()
        for r in self.store.query(sql, params):
            key = by_prompt.get((r["prompt_id"], frozenset((r["run_a"], r["run_b"]))))
            if key is not None:
                out[key] += 1
        return out

    def next_rating(self, annotator_id: str, rng: random.Random, busy: Counter[Any] | None = None) -> Response | None:
        """A response this annotator has not rated, among those with the fewest ratings plus `busy`
        (items now open on someone's page, keyed as rated_keys)."""
        mine = self.rated_keys(annotator_id)
        todo = [r for r in self.ratings if (r.run_id, r.task, r.sample_id) not in mine]
        if not todo:
            return None
        everyone = self.rated_keys() + (busy or Counter())
        fewest = min(everyone[(r.run_id, r.task, r.sample_id)] for r in todo)
        return rng.choice([r for r in todo if everyone[(r.run_id, r.task, r.sample_id)] == fewest])

    def next_battle(self, annotator_id: str, rng: random.Random, busy: Counter[Any] | None = None) -> Battle | None:
        """A battle this annotator has not voted in, among those with the fewest votes plus `busy` (keyed by Battle.key)."""
        mine = self.voted_keys(annotator_id)
        todo = [b for b in self.battles if b.key not in mine]
        if not todo:
            return None
        everyone = self.voted_keys() + (busy or Counter())
        fewest = min(everyone[b.key] for b in todo)
        return rng.choice([b for b in todo if everyone[b.key] == fewest])

    def progress(self, annotator_id: str) -> dict[str, int]:
        return {
            "rated": len(self.rated_keys(annotator_id)),
            "ratings_total": len(self.ratings),
            "voted": len(self.voted_keys(annotator_id)),
            "battles_total": len(self.battles),
        }
