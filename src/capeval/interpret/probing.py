"""Linear probes per layer (Gurnee & Tegmark, arXiv 2310.02207): is a numeric fact linearly readable?

For every entity, the hidden state of its last token is read at every layer; a ridge regression fit
on some entities predicts the target (a year, a latitude/longitude) of the held-out ones, and R^2 on
those says how linearly the layer represents it. A control probe fit to shuffled training targets
gives the R^2 a probe reaches without any signal (about 0 or below), the baseline to beat.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from capeval.errors import CapevalError, DatasetError

MIN_ENTITIES = 10
MIN_TEST = 3
# ridge penalties tried per layer on standardised features; the one with the smallest
# leave-one-out error on the training entities is used
ALPHAS = tuple(float(a) for a in np.logspace(-2, 6, 17))


class ProbeError(CapevalError):
    """Probe data or settings that cannot give a meaningful probe."""


@dataclass(frozen=True)
class ProbeData:
    """Entities and their numeric targets [n, k] read from a CSV file."""

    entities: tuple[str, ...]
    target_names: tuple[str, ...]
    targets: Any  # np.ndarray [n, k]


@dataclass(frozen=True)
class LayerProbe:
    """A layer's held-out R^2 per target, and that of the probe fit to shuffled targets."""

    layer: int
    alpha: float
    r2: dict[str, float]
    control_r2: dict[str, float]

    @property
    def mean_r2(self) -> float:
        return float(np.mean(list(self.r2.values())))

    @property
    def mean_control_r2(self) -> float:
        return float(np.mean(list(self.control_r2.values())))


@dataclass(frozen=True)
class ProbeReport:
    model: str
    prompt: str
    targets: tuple[str, ...]
    n_entities: int
    n_train: int
    n_test: int
    seed: int
    layers: tuple[LayerProbe, ...]
    best_layer: int
    # held-out entities with their true and predicted targets at the best layer
    predictions: tuple[dict[str, Any], ...] = field(default=())

    def layer(self, index: int) -> LayerProbe:
        return next(p for p in self.layers if p.layer == index)


def read_probe_csv(path: str | Path, targets: Sequence[str], entity_column: str = "entity") -> ProbeData:
    """Entities and numeric targets from a CSV with a header: an entity column plus target columns."""
    path = Path(path)
    if not targets:
        raise ProbeError("no target column given", "name one or more numeric columns, e.g. --target year")
    if not path.is_file():
        raise DatasetError(f"probe data not found: {path}", "give a CSV file with columns entity,<target>...")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        if not columns:
            raise DatasetError(f"{path} is empty", "the first line must name the columns, e.g. entity,year")
        missing = [c for c in (entity_column, *targets) if c not in columns]
        if missing:
            raise DatasetError(
                f"{path} has no column {', '.join(repr(c) for c in missing)}",
                f"its columns: {', '.join(columns)}",
            )
        entities: list[str] = []
        values: list[list[float]] = []
        seen: dict[str, int] = {}
        for line, row in enumerate(reader, start=2):
            entity = (row.get(entity_column) or "").strip()
            if not entity:
                raise DatasetError(f"{path} line {line}: empty {entity_column}", "every row names an entity")
            if entity in seen:
                raise DatasetError(
                    f"{path} line {line}: '{entity}' also on line {seen[entity]}",
                    "each entity once: a duplicate could sit in both the training and the held-out set",
                )
            seen[entity] = line
            numbers = []
            for name in targets:
                raw = (row.get(name) or "").strip()
                try:
                    number = float(raw)
                except ValueError:
                    number = math.nan
                if not math.isfinite(number):
                    raise DatasetError(
                        f"{path} line {line}: {name} '{raw}' is not a number", f"fix or drop the row of '{entity}'"
                    )
                numbers.append(number)
            entities.append(entity)
            values.append(numbers)
    if len(entities) < MIN_ENTITIES:
        raise DatasetError(
            f"{path} has {len(entities)} entities; a held-out R^2 needs at least {MIN_ENTITIES}",
            "add rows (the paper uses thousands; a few dozen show the trend)",
        )
    return ProbeData(tuple(entities), tuple(targets), np.asarray(values, dtype=np.float64))


def split(n: int, test_fraction: float, seed: int) -> tuple[Any, Any]:
    """(train, test) indices from a seeded permutation of n entities."""
    if not 0.0 < test_fraction < 1.0:
        raise ProbeError(f"test fraction must be between 0 and 1, got {test_fraction}", "e.g. 0.25")
    n_test = max(MIN_TEST, round(n * test_fraction))
    if n - n_test < MIN_TEST:
        raise ProbeError(f"{n} entities leave too few to train on with test fraction {test_fraction}", "lower it")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


@dataclass(frozen=True)
class RidgeProbe:
    """A ridge regression on standardised features; `predict` undoes the standardisation."""

    mean: Any
    scale: Any
    coef: Any  # [d, k]
    intercept: Any  # [k]
    alpha: float

    def predict(self, x: Any) -> Any:
        return ((x - self.mean) / self.scale) @ self.coef + self.intercept


def fit_ridge(x: Any, y: Any, alphas: Sequence[float] = ALPHAS) -> RidgeProbe:
    """Closed-form ridge, the penalty chosen by leave-one-out error on (x, y) (exact for ridge via
    the hat matrix's diagonal, the intercept's share included)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0
    xs = (x - mean) / scale
    y_mean = y.mean(axis=0)
    yc = y - y_mean
    u, s, vt = np.linalg.svd(xs, full_matrices=False)
    uty = u.T @ yc
    n = x.shape[0]
    best: tuple[float, float] | None = None
    for alpha in alphas:
        shrink = s**2 / (s**2 + alpha)
        fitted = u @ (shrink[:, None] * uty)
        leverage = (u**2) @ shrink + 1.0 / n
        loo = (yc - fitted) / np.maximum(1.0 - leverage, 1e-12)[:, None]
        error = float(np.mean(loo**2))
        if best is None or error < best[0]:
            best = (error, float(alpha))
    assert best is not None
    alpha = best[1]
    coef = vt.T @ ((s / (s**2 + alpha))[:, None] * uty)
    return RidgeProbe(mean, scale, coef, y_mean, alpha)


def r2_score(y_true: Any, y_pred: Any) -> Any:
    """Coefficient of determination per column: 1 - SS_res / SS_tot (around the held-out mean)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    ss_res = ((y_true - y_pred) ** 2).sum(axis=0)
    ss_tot = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    return 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, np.nan)


def probe_layers(
    states: Any,
    data: ProbeData,
    *,
    seed: int = 0,
    test_fraction: float = 0.25,
    model: str = "",
    prompt: str = "{entity}",
) -> ProbeReport:
    """Fit and score a ridge probe (and its shuffled-target control) on every layer.

    `states` is [layers, n entities, hidden] (as `HFModel.hidden_states` returns)."""
    states = np.asarray(states)
    n = len(data.entities)
    if states.ndim != 3 or states.shape[1] != n:
        raise ProbeError(f"hidden states of shape {states.shape} do not match {n} entities", "one row per entity")
    train, test = split(n, test_fraction, seed)
    y = data.targets
    if np.any(y[test].std(axis=0) == 0):
        raise ProbeError("a target is constant on the held-out entities, so R^2 is undefined", "use another seed")
    shuffled = y[train][np.random.default_rng(seed + 1).permutation(len(train))]
    names = data.target_names
    layers = []
    predictions: dict[int, Any] = {}
    for layer in range(states.shape[0]):
        x = states[layer]
        probe = fit_ridge(x[train], y[train])
        predictions[layer] = probe.predict(x[test])
        control = fit_ridge(x[train], shuffled).predict(x[test])
        layers.append(
            LayerProbe(
                layer=layer,
                alpha=probe.alpha,
                r2=dict(zip(names, map(float, r2_score(y[test], predictions[layer])))),
                control_r2=dict(zip(names, map(float, r2_score(y[test], control)))),
            )
        )
    best = max(layers, key=lambda p: p.mean_r2).layer
    held_out = tuple(
        {
            "entity": data.entities[i],
            **{f"{name}": float(y[i, k]) for k, name in enumerate(names)},
            **{f"{name}_predicted": float(predictions[best][j, k]) for k, name in enumerate(names)},
        }
        for j, i in enumerate(test)
    )
    return ProbeReport(
        model=model, prompt=prompt, targets=names, n_entities=n, n_train=len(train), n_test=len(test),
        seed=seed, layers=tuple(layers), best_layer=best, predictions=held_out,
    )


def entity_prompts(entities: Sequence[str], prompt: str) -> tuple[list[str], list[int]]:
    """Each entity put into the prompt, and the character where the entity ends (its last token is
    the one probed, as in the paper, even when the prompt goes on after it)."""
    if prompt.count("{entity}") != 1:
        raise ProbeError(
            f"the prompt must hold '{{entity}}' once, got {prompt!r}", "e.g. --prompt '{entity}' or '{entity} was born in'"
        )
    head, tail = prompt.split("{entity}")
    return [head + e + tail for e in entities], [len(head) + len(e) for e in entities]


def run_probe(
    model: Any,
    data: ProbeData,
    *,
    prompt: str = "{entity}",
    seed: int = 0,
    test_fraction: float = 0.25,
) -> ProbeReport:
    """Hidden states of every entity from `model` (a backend with `hidden_states`), then the probes."""
    texts, ends = entity_prompts(data.entities, prompt)
    if not callable(getattr(model, "hidden_states", None)):
        raise ProbeError(
            f"model {getattr(model, 'model_id', model)} does not expose hidden states",
            "probe a local model: a bundled name or hf:<path or hub id>",
        )
    states = model.hidden_states(texts, ends)
    return probe_layers(states, data, seed=seed, test_fraction=test_fraction, model=model.model_id, prompt=prompt)
