"""Prompt lookup (models/hf/lookup.py): the draft tokens speculative greedy decoding checks."""

from __future__ import annotations

from capeval.models.hf.lookup import PromptLookup


def test_draft_is_what_followed_the_last_trigram_before():
    lookup = PromptLookup([5, 1, 2, 3, 9, 8, 7, 1, 2, 3])
    assert lookup.draft(3) == [9, 8, 7]
    assert lookup.draft(1) == [9] and lookup.draft(0) == []
    lookup.extend([9])  # (2, 3, 9) occurred before, ending at index 5: then came 8, 7, 1
    assert lookup.draft(3) == [8, 7, 1]


def test_latest_occurrence_wins_and_bigram_is_the_fallback():
    lookup = PromptLookup([1, 2, 3, 4, 1, 2, 3, 6, 0, 1, 2, 3])
    assert lookup.draft(2) == [6, 0]  # the most recent earlier (1, 2, 3)
    lookup = PromptLookup([7, 4, 5, 6, 8, 4, 5])  # no earlier (8, 4, 5); (4, 5) was followed by 6
    assert lookup.draft(2) == [6, 8]
    assert PromptLookup([1, 2, 3, 4]).draft(4) == []  # nothing repeats: no guess
    assert PromptLookup([]).draft(3) == [] and PromptLookup([3]).draft(3) == []


def test_a_loop_is_continued_past_the_end_of_the_text():
    lookup = PromptLookup([9, 1, 2, 3, 1, 2, 3])
    assert lookup.draft(7) == [1, 2, 3, 1, 2, 3, 1]
    lookup = PromptLookup([4, 4, 4])  # (4, 4) ended at 2 before: period 1
    assert lookup.draft(3) == [4, 4, 4]
