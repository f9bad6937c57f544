"""Report sections: each turns plain data into tables and charts, or says which command makes its data."""

from capeval.report.sections.agreement import agreement_section
from capeval.report.sections.alteration import alteration_section
from capeval.report.sections.base import Cell, Section, Table, task_samples_anchor
from capeval.report.sections.capabilities import (
    CapabilityScore,
    capabilities_section,
    capability_scores,
    weakest_link_section,
)
from capeval.report.sections.judging import (
    RatingPair,
    arena_section,
    correlation_section,
    paired_votes,
    rating_pairs,
    verdict_readings_section,
)
from capeval.report.sections.results import comparisons_section, headline_section, tasks_section
from capeval.report.sections.robustness import ContaminationCheck, contamination_section, sensitivity_section
from capeval.report.sections.samples import SampleGroup, sample_groups

__all__ = [
    "CapabilityScore",
    "Cell",
    "ContaminationCheck",
    "RatingPair",
    "SampleGroup",
    "Section",
    "Table",
    "agreement_section",
    "alteration_section",
    "arena_section",
    "capabilities_section",
    "capability_scores",
    "comparisons_section",
    "contamination_section",
    "correlation_section",
    "headline_section",
    "paired_votes",
    "rating_pairs",
    "sample_groups",
    "sensitivity_section",
    "task_samples_anchor",
    "tasks_section",
    "verdict_readings_section",
    "weakest_link_section",
]
