"""Contamination checks: split gap, GSM-Symbolic variants, memorisation scoring, n-gram overlap."""

from __future__ import annotations

import re

import numpy as np
import pytest

from capeval.analysis.contamination import (
    ContaminationError,
    memorisation_requests,
    ngram_overlap,
    parse_gsm_chain,
    perturb_gsm8k,
    rouge_l,
    score_memorisation,
    split_gap,
    split_item,
    verbatim_memorisation,
)
from capeval.types import Response

# GSM8K train items (question, answer with calculator annotations)
NATALIA = {
    "id": "natalia",
    "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
}
WENG = {
    "id": "weng",
    "question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10",
}
JULIE = {
    "id": "julie",
    "question": "Julie is reading a 120-page book. Yesterday, she was able to read 12 pages and today, she read twice "
    "as many pages as yesterday. If she wants to read half of the remaining pages tomorrow, how many pages should she read?",
    "answer": "Maila read 12 x 2 = <<12*2=24>>24 pages today.\nSo she was able to read a total of 12 + 24 = <<12+24=36>>36 "
    "pages since yesterday.\nThere are 120 - 36 = <<120-36=84>>84 pages left to be read.\nSince she wants to read half of "
    "the remaining pages tomorrow, then she should read 84/2 = <<84/2=42>>42 pages.\n#### 42",
}
JAMES = {  # every number is a unit-like constant (2, 3, 52): nothing safe to change
    "id": "james",
    "question": "James writes a 3-page letter to 2 different friends twice a week.  How many pages does he write a year?",
    "answer": "He writes each friend 3*2=<<3*2=6>>6 pages a week\nSo he writes 6*2=<<6*2=12>>12 pages every week\n"
    "That means he writes 12*52=<<12*52=624>>624 pages a year\n#### 624",
}
NO_ANNOTATIONS = {"id": "plain", "question": "Tom has 17 apples and eats 9. How many are left?", "answer": "17 - 9 = 8\n#### 8"}


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+(?:\.\d+)?", text.replace(",", ""))]


def test_split_gap_flags_a_public_advantage_only():
    rng = np.random.default_rng(0)
    public = (rng.random(500) < 0.80).astype(float)
    private = (rng.random(500) < 0.65).astype(float)
    g = split_gap(public, private, n_resamples=3000)
    assert g.gap == pytest.approx(public.mean() - private.mean())
    assert g.flagged and g.p_value < 0.001 and g.ci_low > 0
    assert g.mdd == pytest.approx(0.088, abs=0.01)  # 2.80 * sqrt(2 p (1-p) / 500) at p ~ 0.72
    same = split_gap(public, (rng.random(500) < 0.80).astype(float), n_resamples=3000)
    assert not same.flagged and same.ci_low < 0 < same.ci_high and same.p_value > 0.05
    reverse = split_gap(private, public, n_resamples=1000)
    assert not reverse.flagged  # private better is not contamination
    with pytest.raises(ContaminationError, match="need scores on both splits"):
        split_gap([], [1.0])


def test_natalia_variants_recompute_the_answer():
    rep = perturb_gsm8k([NATALIA], n_variants=5, seed=0)
    assert rep.n_perturbed == 1 and len(rep.variants) == 5
    for v in rep.variants:
        n = int(v.numbers["48"])
        assert n != 48 and n % 2 == 0  # half of it must stay a whole number of clips
        assert f" {n} of her friends" in v.question
        assert v.final_answer == str(n + n // 2)
        assert v.answer.endswith(f"#### {n + n // 2}")
        assert "Natalia" not in v.question and v.names["Natalia"] in v.question
        assert "half as many" in v.question  # the word stays; only digits change
    assert len({v.question for v in rep.variants}) == 5


def test_julie_and_weng_chains():
    rep = perturb_gsm8k([JULIE, WENG], n_variants=3, seed=1)
    assert rep.n_perturbed == 2
    for v in rep.variants:
        if v.original_id == "julie":
            pages = int(v.numbers["120"])
            assert f"{pages}-page book" in v.question
            assert int(v.final_answer) == (pages - 36) // 2 and (pages - 36) % 2 == 0
            assert "12 pages" in v.question  # 12 is unit-like: kept
        else:
            minutes = int(v.numbers["50"])
            assert f"{minutes} minutes" in v.question and "$12" in v.question
            assert float(v.final_answer) == pytest.approx(12 / 60 * minutes)


def test_unfollowable_items_are_counted_not_faked():
    rep = perturb_gsm8k([NATALIA, JAMES, NO_ANNOTATIONS], seed=0)
    assert rep.n_items == 3 and rep.n_perturbed == 1
    assert rep.fraction_perturbed == pytest.approx(1 / 3)
    assert rep.rejected == {"no question number is used in the solution": 1, "no <<expr=result>> calculator annotations": 1}


def test_chain_links_results_and_rejects_false_arithmetic():
    chain = parse_gsm_chain(NATALIA["question"], NATALIA["answer"])
    assert [s.operands for s in chain.steps] == [(("q", 48.0), ("c", 2.0)), (("q", 48.0), ("s", 0))]
    assert chain.final_step == 1
    bad = {**NATALIA, "answer": NATALIA["answer"].replace("<<48+24=72>>", "<<48+24=73>>")}
    assert perturb_gsm8k([bad]).rejected == {"an annotation's arithmetic does not hold": 1}


def test_memorisation_scoring():
    prefix, rest = split_item("one two three four five six seven eight", 0.5)
    assert (prefix, rest) == ("one two three four", "five six seven eight")
    reqs, _parts = memorisation_requests([("x", "one two three four five six seven eight"), ("y", "single")])
    assert len(reqs) == 1 and reqs[0].prompt == "one two three four" and reqs[0].params.temperature == 0
    res = score_memorisation(
        [("a", "p", "Five six, seven eight."), ("b", "p", "five six seven eight"), ("c", "p", "five six seven eight")],
        [Response(text=" five six seven eight nine ten"), Response(text=" five six seven nine"), Response(text="zzz")],
    )
    a, b, c = res.items
    assert a.exact and a.rouge_l == 1.0 and a.edit_similarity == 1.0  # case and punctuation ignored
    assert not b.exact and b.rouge_l == pytest.approx(0.75) and b.edit_similarity == pytest.approx(0.75)
    assert c.rouge_l == 0.0
    assert res.exact_rate == pytest.approx(1 / 3)
    assert rouge_l(["a", "b", "c"], ["a", "c"]) == pytest.approx(0.8)


def test_memorisation_leaves_failed_calls_out_of_every_rate():
    res = score_memorisation(
        [("a", "p", "five six seven eight"), ("b", "p", "five six seven eight")],
        [Response(text=" five six seven eight"), Response(text=None, error="HTTP 503")],
    )
    # a failed call is no continuation at all: not "not memorised"
    assert [i.id for i in res.items] == ["a"] and res.failed == ("b",)
    assert res.exact_rate == 1.0 and res.mean_rouge_l == 1.0


@pytest.mark.slow
def test_memorisation_with_bundled_model(smollm2, store):
    items = [
        ("alphabet", "a b c d e f g h i j k l m n o p q r s t u v w x y z"),
        ("novel", "Quillon marrow tesselated under the violet bridge while seven copper kettles argued about fog."),
    ]
    # 20 new tokens cover the 13 letters left; a short budget keeps the test quick on CPU
    res = verbatim_memorisation(smollm2, items, store, max_tokens=20)
    by = {i.id: i for i in res.items}
    assert by["alphabet"].prefix.endswith("l m") and by["alphabet"].truth.startswith("n o p")
    assert by["alphabet"].exact  # every model has seen the alphabet
    assert by["novel"].rouge_l < 0.5 and not by["novel"].exact
    assert res.exact_rate == 0.5
    # the calls went through the engine into the store (cached for the next check)
    assert store.query("SELECT COUNT(*) AS n FROM model_calls")[0]["n"] == 2


def test_ngram_overlap_streams_across_lines(tmp_path):
    leaked = "The quick brown fox jumps over the lazy dog while the farmer counts thirteen sheep in the meadow"
    clean = "Completely different words that never appear anywhere inside the reference corpus text at all okay"
    corpus = tmp_path / "corpus.txt"
    # the leaked item is split over two lines, upper-cased and punctuated differently
    corpus.write_text(
        "noise " * 50 + "\nTHE QUICK BROWN FOX, jumps over the lazy dog\nwhile the farmer counts thirteen sheep in the meadow!\n"
        + "more noise here\n" * 100
    )
    res = ngram_overlap([("leaked", leaked), ("clean", clean), ("short", "too short")], corpus, n=13)
    by = {i.id: i for i in res.items}
    assert by["leaked"].n_ngrams == 18 - 13 + 1 and by["leaked"].ratio == 1.0 and by["leaked"].flagged
    assert by["clean"].n_matched == 0 and not by["clean"].flagged
    assert by["short"].ratio is None and by["short"].n_ngrams == 0
    assert res.n_any_overlap == 1 and [i.id for i in res.flagged] == ["leaked"]
    assert res.corpus_tokens == 50 + 18 + 300
    half = ngram_overlap([("partial", leaked + " " + clean)], corpus, n=13, flag_ratio=0.5)
    assert 0 < half.items[0].ratio < 0.5 and not half.items[0].flagged
    with pytest.raises(ContaminationError, match="corpus file not found"):
        ngram_overlap([("a", leaked)], tmp_path / "missing.txt")


def test_perturbation_drop_pairs_variants_with_originals():
    from capeval.analysis.contamination import perturbation_drop

    original = {str(i): 1.0 for i in range(30)}
    # two variants per original; the model solves only one in four of them
    variants = {f"{i}-v{k}": float((i + k) % 4 == 0) for i in range(30) for k in range(2)}
    to_original = {vid: vid.split("-")[0] for vid in variants}
    d = perturbation_drop(original, variants, to_original, n_resamples=2000)
    assert d.n == 30
    assert d.mean_a == 1.0 and d.mean_b == pytest.approx(sum(variants.values()) / 60)
    assert d.diff > 0.5 and d.p_value < 0.001
    with pytest.raises(ContaminationError, match="no variant could be matched"):
        perturbation_drop(original, variants, {})


def test_rounded_steps_stay_rounded():
    item = {
        "question": "Sam shares 10 cookies among 3 friends and keeps 17 crackers. How many cookies per friend plus crackers?",
        "answer": "Each gets 10/3 = <<10/3=3.33>>3.33 cookies.\nTotal 3.33+17=<<3.33+17=20.33>>20.33\n#### 20.33",
    }
    (v,) = perturb_gsm8k([item], seed=0).variants
    crackers = int(v.numbers["17"])
    assert v.final_answer == f"{3.33 + crackers:.2f}"
    assert perturb_gsm8k([{**item, "answer": item["answer"].replace("3.33", "3.4")}]).rejected == {"an annotation's arithmetic does not hold": 1}
