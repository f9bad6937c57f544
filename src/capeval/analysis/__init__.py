"""Analyses over plain tables of scores: statistics, weakest link, arena, contamination, correlation."""
