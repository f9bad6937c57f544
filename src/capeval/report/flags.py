"""Contamination results for the report: split gaps computed from stored runs, checks read from JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from capeval.report.data import ReportError
from capeval.report.sections import ContaminationCheck


def parse_gap_pair(text: str) -> tuple[str, str]:
    """"PUBLIC_RUN:PRIVATE_RUN" -> (public, private)."""
    public, sep, private = text.partition(":")
    if not sep or not public or not private:
        raise ReportError(f"--gap expects PUBLIC_RUN:PRIVATE_RUN, got '{text}'", "e.g. --gap 20250101-1200-ab12cd:20250101-1300-ef34ab")
    return public, private


def gap_check(store: Any, public_run: str, private_run: str, seed: int = 0) -> tuple[ContaminationCheck, dict[str, Any]]:
    """Split gap between two stored runs of one model (public vs private items, or original vs
    perturbed variants): per-item primary-metric values of each run's only or first task."""
    from capeval.analysis.contamination import split_gap
    from capeval.analysis.tables import load_run_scores

    pub, priv = load_run_scores(store, public_run), load_run_scores(store, private_run)
    t_pub, t_priv = next(iter(pub.metrics)), next(iter(priv.metrics))
    metric = pub.primary(t_pub)
    g = split_gap(list(pub.per_item(t_pub, metric).values()), list(priv.per_item(t_priv, metric if metric in priv.metrics[t_priv] else None).values()), seed=seed)
    who = pub.model if pub.model == priv.model else f"{pub.model} vs {priv.model}"
    label = f"{who}: {t_pub} vs {t_priv} (runs {pub.name}, {priv.name})"
    d = asdict(g)
    return _gap(label, d), d


def _gap(label: str, d: Mapping[str, Any]) -> ContaminationCheck:
    figures = (
        ("public", f"{d['mean_public']:.3f} (n={d['n_public']})"),
        ("private", f"{d['mean_private']:.3f} (n={d['n_private']})"),
        ("gap", f"{d['gap']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"),
        ("p", f"{d['p_value']:.4f}"),
        ("detectable gap", f"{d['mdd']:.3f}"),
    )
    reason = (
        "public items scored higher than the CI allows"
        if d["flagged"]
        else "the gap is within what the CIs allow"
    )
    return ContaminationCheck("split gap", label, figures, bool(d["flagged"]), reason)


def checks_from_json(path: Path, gaps: list[tuple[str, dict[str, Any]]]) -> list[ContaminationCheck]:
    """Read one `capeval contamination ... --json` file; its kind is told by its fields. Split gaps
    are also appended to `gaps` for the chart."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"contamination file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ReportError(f"{path} is not JSON: {e.msg}", "pass the file written by --json") from None
    label = Path(path).stem
    if isinstance(d, dict) and {"gap", "mean_public", "mean_private", "flagged"} <= d.keys():
        gaps.append((label, d))
        return [_gap(label, d)]
    if isinstance(d, dict) and "exact_rate" in d:
        items = d.get("items") or []
        exact = sum(1 for i in items if i.get("exact"))
        return [
            ContaminationCheck(
                "verbatim memorisation",
                label,
                (
                    ("exact", f"{d['exact_rate']:.3f}"),
                    (f"near-exact (ROUGE-L >= {d.get('near_threshold', 0):g})", f"{d['near_exact_rate']:.3f}"),
                    ("mean ROUGE-L", f"{d['mean_rouge_l']:.3f}"),
                    ("items", str(len(items))),
                ),
                exact > 0,
                f"{exact} items continued word for word" if exact else "no item continued word for word",
            )
        ]
    if isinstance(d, dict) and {"items", "n", "flag_ratio", "corpus_tokens"} <= d.keys():
        items = d["items"]
        flagged = [i for i in items if i.get("flagged")]
        return [
            ContaminationCheck(
                f"{d['n']}-gram overlap",
                label,
                (
                    ("items with any overlap", str(sum(1 for i in items if i.get("n_matched")))),
                    (f"items >= {d['flag_ratio']:g} overlap", str(len(flagged))),
                    ("items", str(len(items))),
                    ("corpus words", str(d["corpus_tokens"])),
                ),
                bool(flagged),
                f"{len(flagged)} items largely found in the corpus (first: {flagged[0].get('id')})" if flagged else "no item above the overlap ratio",
            )
        ]
    raise ReportError(
        f"{path} is not a contamination result capeval knows",
        "pass JSON from `capeval contamination gap|ngram|memorisation --json FILE`",
    )


def load_checks(
    store: Any, gap_pairs: Sequence[str], files: Sequence[Path], seed: int = 0
) -> tuple[list[ContaminationCheck], list[tuple[str, dict[str, Any]]]]:
    checks: list[ContaminationCheck] = []
    gaps: list[tuple[str, dict[str, Any]]] = []
    for pair in gap_pairs:
        check, g = gap_check(store, *parse_gap_pair(pair), seed=seed)
        checks.append(check)
        gaps.append((check.label, g))
    for f in files:
        checks.extend(checks_from_json(f, gaps))
    return checks, gaps
