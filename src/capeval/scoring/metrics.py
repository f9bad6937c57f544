"""Per-sample metrics: pass@k, DROP exact match and F1, MATH answer equivalence, bits per byte;
which metrics are better when lower, and which scale a judge metric is on."""

from __future__ import annotations

import math
import re
import string
import threading
from collections.abc import Sequence
from typing import Literal

import numpy as np

from capeval.errors import CapevalError

# ---- direction ----------------------------------------------------------------------------------
# Metrics where a lower value is better (lm-evaluation-harness's `higher_is_better: false`). They are
# measures in their own units, not scores on 0-1 or 1-5: shown as stored, never averaged with
# accuracies into a headline or a capability score, and the lower value wins a comparison.
LOWER_IS_BETTER = frozenset({"bits_per_byte"})


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` is the better one (True for every score but
    LOWER_IS_BETTER's)."""
    return metric not in LOWER_IS_BETTER


# ---- scales ------------------------------------------------------------------------------------

# What stored scores are on: "0-1" (accuracy-like), judge ratings "1-5" (CrossEval, INSTRUCTEVAL),
# "1-10" (MT-Bench) and "1-100" (CrossEval's score_100); "auto": guess from the values.
Scale = Literal["auto", "0-1", "1-5", "1-10", "1-100"]
# The judge metrics whose name fixes their scale (values cannot tell: a run where every verdict is
# 1 would look like perfect accuracy).
JUDGE_SCALES: dict[str, Scale] = {"score_100": "1-100", "rating": "1-5", "relevance": "1-5", "coherence": "1-5"}
# How far each scale reaches, so a CI's width can be read in points of a 0-100 range.
SCALE_RANGE: dict[str, float] = {"0-1": 1.0, "1-5": 4.0, "1-10": 9.0, "1-100": 99.0}


def metric_scale(metric: str, task: str = "") -> Scale | None:
    """The scale `metric` of `task` is on when its name says so: the judge metrics of JUDGE_SCALES
    (and any other "<name>_100"), MT-Bench's "score" and "score_turnN" (1-10); None for the rest,
    whose scale is 0-1 for accuracy-like scores or is guessed from their values."""
    if metric in JUDGE_SCALES:
        return JUDGE_SCALES[metric]
    if metric.endswith("_100"):
        return "1-100"
    if task.split("/")[0] == "mtbench" and (metric == "score" or metric.startswith("score_turn")):
        return "1-10"
    return None


def scale_range(metric: str, task: str = "") -> float:
    """The width of `metric`'s scale (1 for a 0-1 score, 4 for a 1-5 rating, ...)."""
    return SCALE_RANGE[metric_scale(metric, task) or "0-1"]


def metric_label(metric: str) -> str:
    """The metric's name as tables show it: "bits_per_byte (lower is better)", "acc"."""
    return metric if higher_is_better(metric) else f"{metric} (lower is better)"


# ---- bits per byte --------------------------------------------------------------------------------


def bits_per_byte(loglikelihood: float, n_bytes: int) -> float:
    """-loglikelihood / (ln 2 * n_bytes): the bits a model needs per UTF-8 byte of a text, from the
    text's summed natural-log probability (lm-evaluation-harness's `bits_per_byte`; The Pile,
    Gao et al. 2020). Bytes, not tokens, so models with different tokenizers compare."""
    if n_bytes <= 0:
        raise ValueError(f"bits per byte needs a text of at least one byte (got {n_bytes})")
    return -loglikelihood / (math.log(2) * n_bytes)


# ---- pass@k -------------------------------------------------------------------------------------


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator of Chen et al. 2021 (Codex paper): the probability that at
    least one of k samples drawn without replacement from n generations, c of them correct, passes.

    1 - C(n-c, k) / C(n, k), computed as a product so large n does not overflow."""
    if n <= 0 or k <= 0:
        raise ValueError(f"pass@k needs n >= 1 and k >= 1 (got n={n}, k={k})")
    if not 0 <= c <= n:
        raise ValueError(f"c must lie in [0, n] (got c={c}, n={n})")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got n={n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


# ---- DROP ---------------------------------------------------------------------------------------
# The official DROP evaluation (Dua et al. 2019, allennlp drop_eval.py): answers are bags of spans;
# each span is tokenised on spaces and hyphens, lower-cased, stripped of punctuation (numbers keep
# theirs), numbers rewritten as floats ("3" == "3.0"), articles removed. EM compares the bags of
# normalised spans; F1 aligns predicted and gold spans one-to-one (Hungarian matching) and a pair
# whose gold span holds numbers scores 0 unless the prediction shares one of them.

_PUNCT = set(string.punctuation)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _normalize_drop_token(token: str) -> str:
    token = token.lower()
    if not _is_number(token):
        token = "".join(ch for ch in token if ch not in _PUNCT)
    if _is_number(token):
        token = str(float(token))
    token = re.sub(r"\b(a|an|the)\b", " ", token)
    return " ".join(token.split())


def normalize_drop_answer(text: str) -> str:
    """One span normalised as the official DROP evaluation does. U+2212 and en dashes count as the
    hyphen the official tokeniser splits on, so "−5" scores as "-5" does there (equal to "5")."""
    text = text.replace("\u2212", "-").replace("\u2013", "-")
    parts = [_normalize_drop_token(t) for t in re.split(r" |-", text)]
    return " ".join(p for p in parts if p.strip()).strip()


def _bags(spans: Sequence[str]) -> tuple[list[str], list[set[str]]]:
    normalized = [normalize_drop_answer(s) for s in spans]
    return normalized, [set(n.split()) for n in normalized]


def _bag_f1(pred: set[str], gold: set[str]) -> float:
    common = len(gold & pred)
    precision = common / len(pred) if pred else 1.0
    recall = common / len(gold) if gold else 1.0
    if precision == 0.0 and recall == 0.0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _numbers_agree(gold: set[str], pred: set[str]) -> bool:
    gold_numbers = {w for w in gold if _is_number(w)}
    return not gold_numbers or bool(gold_numbers & {w for w in pred if _is_number(w)})


def drop_em_f1(prediction: str | Sequence[str], gold_spans: Sequence[str]) -> tuple[float, float]:
    """DROP exact match and F1 of a prediction against ONE gold answer given as its spans.

    `prediction` is a string (one span) or a list of spans. F1 is rounded to 2 decimals as in the
    official script. Take the max over a question's alternative gold answers with
    `drop_max_em_f1`."""
    from scipy.optimize import linear_sum_assignment

    pred_spans = [prediction] if isinstance(prediction, str) else list(prediction)
    gold_list = list(gold_spans)
    pred_norm, pred_bags = _bags(pred_spans)
    gold_norm, gold_bags = _bags(gold_list)
    em = float(set(pred_norm) == set(gold_norm) and len(pred_norm) == len(gold_norm))
    scores = np.zeros((len(gold_bags), len(pred_bags)))
    for gi, g in enumerate(gold_bags):
        for pi, p in enumerate(pred_bags):
            if _numbers_agree(g, p):
                scores[gi, pi] = _bag_f1(p, g)
    best = np.zeros(max(len(gold_bags), len(pred_bags)))
    if scores.size:
        rows, cols = linear_sum_assignment(-scores)
        for r, c in zip(rows, cols):
            best[r] = max(best[r], scores[r, c])
    f1 = round(float(np.mean(best)) if best.size else 0.0, 2)
    return em, f1


def drop_max_em_f1(prediction: str | Sequence[str], golds: Sequence[Sequence[str]]) -> tuple[float, float]:
    """The best EM and the best F1 over a question's alternative gold answers (each a span list)."""
    pairs = [drop_em_f1(prediction, g) for g in golds if g]
    if not pairs:
        return 0.0, 0.0
    return max(p[0] for p in pairs), max(p[1] for p in pairs)


# ---- MATH ---------------------------------------------------------------------------------------


def _fix_fracs(s: str) -> str:
    """"\\frac12" -> "\\frac{1}{2}", "\\frac1{72}" -> "\\frac{1}{72}"."""
    parts = s.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if part.startswith("{") or len(part) < 2:
            out += part
            continue
        a, rest = part[0], part[1:]
        if rest.startswith("{"):
            out += "{" + a + "}" + rest
        else:
            out += "{" + a + "}{" + rest[0] + "}" + rest[1:]
    return out


def _fix_sqrt(s: str) -> str:
    return re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)


def normalize_math_string(s: str) -> str:
    """A canonical form of a LaTeX answer for string comparison, in the spirit of the MATH
    paper's `is_equiv`: spacing, \\left/\\right, degree signs, dollar and percent signs, units in
    \\text{}, "x = " prefixes, \\dfrac/\\tfrac, "0.5" vs "\\frac{1}{2}", "a/b" vs "\\frac{a}{b}"."""
    s = s.strip().replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("°", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    s = re.sub(r"\\text\{\s*[a-zA-Z ]*\}$", "", s) if re.search(r"\d", s) else s
    s = re.sub(r"\\(?:text|mathrm|textbf|mbox)\{([^{}]*)\}", r"\1", s)
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    # "x = 5" and "k=5" mean 5 when the left side is a lone variable
    m = re.fullmatch(r"\s*[a-zA-Z]\w*\s*=\s*(.+)", s)
    if m:
        s = m.group(1)
    s = _fix_sqrt(s)
    s = s.replace(" ", "")
    s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    m = re.fullmatch(r"(-?\d+)/(\d+)", s)
    if m:
        s = f"\\frac{{{m.group(1)}}}{{{m.group(2)}}}"
    s = s.rstrip(".")
    return s


def math_grader() -> str:
    """The grader `math_equivalent` uses, with its version ("math-verify 0.9.0"), as a run records it.

    Raises CapevalError when math-verify is missing: it is a dependency of capeval, and scoring MATH
    without it would give different numbers on different machines."""
    from importlib import metadata

    try:
        import math_verify  # noqa: F401
    except ImportError as e:
        raise CapevalError(
            "capeval's MATH grader, math-verify, is not installed",
            "pip install math-verify  (it is a dependency of capeval: reinstall with scripts/install.sh)",
        ) from e
    return f"math-verify {metadata.version('math-verify')}"


def _math_verify(pred: str, gold: str) -> bool:
    math_grader()
    from math_verify import parse, verify

    # math-verify times out through SIGALRM, which only the main thread may set; it never raises
    # (raise_on_error=False): unparseable LaTeX parses to [] and a timeout verifies as False
    main = threading.current_thread() is threading.main_thread()
    timeout = 5 if main else None
    g = parse(f"${gold}$", parsing_timeout=timeout)  # type: ignore[arg-type]
    p = parse(f"${pred}$", parsing_timeout=timeout)  # type: ignore[arg-type]
    if not g or not p:
        return False
    return bool(verify(g, p, timeout_seconds=timeout))


def math_equivalent(pred: str | None, gold: str) -> bool:
    """Whether a predicted MATH answer equals the gold answer.

    One grading path: equal normalised strings (`normalize_math_string`) are equivalent; otherwise
    math-verify (a required dependency) decides, on the two answers wrapped in `$...$`. An answer
    math-verify cannot parse is not equivalent."""
    if pred is None:
        return False
    if normalize_math_string(pred) == normalize_math_string(gold):
        return True
    return _math_verify(pred, gold)
