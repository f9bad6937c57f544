"""MMLU (Hendrycks et al. 2021): 57 subjects, 5-shot from dev, log-likelihood or generative."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from capeval.prompting import PromptLayout
from capeval.tasks._common import SUBJECT_KEY, SubjectTask, choice_rows, letter_index, local_or
from capeval.tasks.registry import register_subject_tasks, register_task
from capeval.tasks.sources import Source
from capeval.types import GenerationParams, Sample

MMLU_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine", "college_physics",
    "computer_security", "conceptual_physics", "econometrics", "electrical_engineering", "elementary_mathematics",
    "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry", "high_school_computer_science",
    "high_school_european_history", "high_school_geography", "high_school_government_and_politics",
    "high_school_macroeconomics", "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history", "high_school_world_history",
    "human_aging", "human_sexuality", "international_law", "jurisprudence", "logical_fallacies", "machine_learning",
    "management", "marketing", "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition",
    "philosophy", "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy", "virology",
    "world_religions",
)  # fmt: skip

# The header line of the original MMLU evaluation, kept word for word: published numbers were
# measured with it. The variants are capeval's paraphrases.
MMLU_LAYOUT = PromptLayout(
    description="The following are multiple choice questions (with answers) about {subject}.",
    answer_prefix="Answer:",
)
MMLU_VARIANTS = (
    PromptLayout(
        description="Answer each multiple-choice question on {subject} with the letter of the correct option.",
        answer_prefix="Answer:",
    ),
    PromptLayout(
        description="Below are exam questions about {subject}. Exactly one option is correct.",
        answer_prefix="The correct option is",
    ),
    PromptLayout(
        description="Test your knowledge of {subject}: pick the best choice.", answer_prefix="Choice:"
    ),
)


# The original release's CSV files (data/test/<subject>_test.csv, data/dev/<subject>_dev.csv) have
# no header: question, the four options, the answer letter.
MMLU_CSV_COLUMNS = ("question", "A", "B", "C", "D", "answer")


def mmlu_row(row: Mapping[str, Any], index: int, task: Any) -> Sample:
    """cais/mmlu row: question, subject, choices (4 strings), answer (index 0-3); or a row of the
    original CSV files: question, A, B, C, D, answer (a letter)."""
    if "choices" not in row and "A" in row:
        choices = choice_rows(row[c] for c in "ABCD")
        answer = letter_index(row["answer"], len(choices))
    else:
        choices = choice_rows(row["choices"])
        answer = int(row["answer"])
    if not 0 <= answer < len(choices):
        raise ValueError(f"answer {answer} out of range for {len(choices)} choices")
    subject = row.get(SUBJECT_KEY) or row.get("subject") or ""
    question = str(row["question"]).strip()
    if not question:
        raise ValueError("empty question")
    return Sample(
        id=f"{subject}/{index}",
        task=task.name,
        fields={"question": question},
        target=answer,
        choices=choices,
        metadata={"subject": subject},
    )


def _mmlu(name: str, subjects: tuple[str, ...], data: str | None, generative: bool) -> SubjectTask:
    config = "all" if len(subjects) > 1 else subjects[0]
    return SubjectTask(
        name=name,
        source=local_or(Source("hub", "cais/mmlu", config), data),
        split="test",
        fewshot_split="dev",
        shots=5,
        output_type="multiple_choice",
        mc_mode="generate" if generative else "loglikelihood",
        layout=MMLU_LAYOUT,
        variants=MMLU_VARIANTS,
        csv_columns=MMLU_CSV_COLUMNS,
        generation=GenerationParams(max_tokens=8, stop=("\n",)),
        metrics=("acc",) if generative else ("acc", "acc_norm"),
        capabilities=("Knowledge", "Reasoning"),
        description=(
            f"MMLU {subjects[0].replace('_', ' ')}"
            if len(subjects) == 1
            else "MMLU, 57 subjects: micro acc, macro acc and per subject"
        )
        + (" (letter generated and extracted)" if generative else ""),
        row_to_sample_fn=mmlu_row,
        subjects=subjects,
        benchmark_subjects=MMLU_SUBJECTS,
        all_config="all",
        subject_field="subject",
        sampler="first_n",
        settings={"exemplars": "first 5 dev items of the subject, in order (as the paper)"},
    )


@register_task("mmlu")
def mmlu(data: str | None = None) -> SubjectTask:
    return _mmlu("mmlu", MMLU_SUBJECTS, data, generative=False)


@register_task("mmlu_gen")
def mmlu_gen(data: str | None = None) -> SubjectTask:
    return _mmlu("mmlu_gen", MMLU_SUBJECTS, data, generative=True)


register_subject_tasks("mmlu", MMLU_SUBJECTS, lambda name, subjects, data: _mmlu(name, subjects, data, generative=False))
