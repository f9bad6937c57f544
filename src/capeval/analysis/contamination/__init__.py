"""Contamination checks, one module each: (a) public/private split gap (`split_gap`), (b) GSM-Symbolic
variants (`gsm_symbolic`), (c) verbatim memorisation (`memorisation`), (d) n-gram overlap with a corpus
(`ngram_overlap`)."""

from capeval.analysis.contamination.errors import ContaminationError
from capeval.analysis.contamination.gsm_symbolic import (
    FEMALE_NAMES,
    FIXED_VALUES,
    MALE_NAMES,
    GsmChain,
    PerturbedItem,
    PerturbReport,
    parse_gsm_chain,
    perturb_gsm8k,
    perturb_item,
    safe_eval,
)
from capeval.analysis.contamination.memorisation import (
    MemorisationItem,
    MemorisationResult,
    edit_similarity,
    lcs_length,
    memorisation_requests,
    normalise_words,
    rouge_l,
    score_memorisation,
    split_item,
    verbatim_memorisation,
)
from capeval.analysis.contamination.ngram_overlap import (
    ItemOverlap,
    NgramOverlapResult,
    ngram_overlap,
)
from capeval.analysis.contamination.split_gap import (
    SplitGap,
    perturbation_drop,
    split_gap,
)

__all__ = [
    "FEMALE_NAMES",
    "FIXED_VALUES",
    "MALE_NAMES",
    "ContaminationError",
    "GsmChain",
    "ItemOverlap",
    "MemorisationItem",
    "MemorisationResult",
    "NgramOverlapResult",
    "PerturbReport",
    "PerturbedItem",
    "SplitGap",
    "edit_similarity",
    "lcs_length",
    "memorisation_requests",
    "ngram_overlap",
    "normalise_words",
    "parse_gsm_chain",
    "perturb_gsm8k",
    "perturb_item",
    "perturbation_drop",
    "rouge_l",
    "safe_eval",
    "score_memorisation",
    "split_gap",
    "split_item",
    "verbatim_memorisation",
]
