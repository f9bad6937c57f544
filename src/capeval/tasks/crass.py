"""CRASS (Frohberg & Binder 2022): counterfactual reasoning, 3-shot multiple choice as INSTRUCTEVAL.

INSTRUCTEVAL reads the CSV published in the CRASS repository (not on the Hugging Face hub), shuffles
each item's 3-4 options, shows three fixed exemplars and counts an item right when the generated
text starts with the right letter. capeval does the same with its own three exemplars and a
per-item seeded shuffle (independent of file order).
"""

from __future__ import annotations

import csv
import io
import os
import random
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capeval.errors import DatasetError
from capeval.prompting import PromptConfig, PromptLayout
from capeval.tasks._common import FewShotTask, choice_rows
from capeval.tasks.base import LoadedSamples, refuse_all_malformed
from capeval.tasks.registry import register_task
from capeval.tasks.sources import MALFORMED, Source
from capeval.types import GenerationParams, Sample

CRASS_URL = "https://raw.githubusercontent.com/apergo-ai/CRASS-data-set/main/CRASS_FTM_main_data_set.csv"
SHUFFLE_SEED = 0
ANSWER_COLUMNS = ("CorrectAnswer", "Answer1", "Answer2", "PossibleAnswer3")  # the correct one first

# capeval's own exemplars, in the CRASS style (premise, counterfactual question, 3 options).
EXEMPLARS: tuple[dict[str, str], ...] = (
    {
        "PCTID": "ex1", "Premise": "A boy throws a snowball at a window.",
        "QCC": "What would have happened if the boy had thrown a pillow at the window?",
        "CorrectAnswer": "The window would have stayed whole.", "Answer1": "The window would have shattered.",
        "Answer2": "The pillow would have melted.", "PossibleAnswer3": "",
    },
    {
        "PCTID": "ex2", "Premise": "A woman waters her plants.",
        "QCC": "What would have happened if the woman had watered her plants with sand?",
        "CorrectAnswer": "The plants would have dried out.", "Answer1": "The plants would have grown faster.",
        "Answer2": "That is not possible.", "PossibleAnswer3": "",
    },
    {
        "PCTID": "ex3", "Premise": "A dog reads a newspaper.",
        "QCC": "What would have happened if the dog had eaten the newspaper?",
        "CorrectAnswer": "The dog would have chewed paper.", "Answer1": "The dog would have learned the news.",
        "Answer2": "The newspaper would have barked.", "PossibleAnswer3": "",
    },
)  # fmt: skip

CRASS_LAYOUT = PromptLayout(answer_prefix="Answer:")
CRASS_VARIANTS = (
    PromptLayout(
        description="Answer each what-if question by choosing the most plausible outcome.",
        answer_prefix="Answer:",
    ),
    PromptLayout(
        description="Imagine the situation had been different. Which option follows?",
        answer_prefix="The answer is",
    ),
    PromptLayout(answer_prefix="Choice:"),
)


def crass_row(row: Mapping[str, Any], index: int, task: Any) -> Sample:
    """CRASS CSV row: PCTID, BatchID, Premise, QCC, CorrectAnswer, Answer1, Answer2, PossibleAnswer3."""
    options = [str(row.get(c) or "").strip() for c in ANSWER_COLUMNS]
    options = [o for o in options if o]
    if len(options) < 2 or not str(row.get("CorrectAnswer") or "").strip():
        raise ValueError("needs a CorrectAnswer and at least one other answer")
    correct = options[0]
    item = str(row.get("PCTID") or index)
    random.Random(f"{SHUFFLE_SEED}:{item}").shuffle(options)
    premise, question = str(row["Premise"]).strip(), str(row["QCC"]).strip()
    if not premise or not question:
        raise ValueError("empty premise or question")
    return Sample(
        id=item,
        task=task.name,
        fields={"question": f"{premise} {question}"},
        target=options.index(correct),
        choices=choice_rows(options),
    )


def read_crass_csv(text: str) -> list[dict[str, Any]]:
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))
    if rows and "QCC" not in rows[0]:
        raise DatasetError(
            "not the CRASS CSV: no 'QCC' column", "expected the ';'-separated CRASS_FTM_main_data_set.csv"
        )
    return rows


def fetch_crass_csv(cache_dir: Path) -> str:
    """The CRASS CSV from the cache, downloaded on first use."""
    path = cache_dir / "CRASS_FTM_main_data_set.csv"
    if path.exists():
        return path.read_text(encoding="utf-8")
    hint = f"download {CRASS_URL} where you have internet and pass it: --data crass=/path/to/CRASS_FTM_main_data_set.csv"
    if os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise DatasetError(
            "cannot download the CRASS data set: offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)",
            hint,
        )
    try:
        with urllib.request.urlopen(CRASS_URL, timeout=30) as resp:
            text = resp.read().decode("utf-8")
    except OSError as e:
        raise DatasetError(f"cannot download the CRASS data set: {e}", hint) from None
    cache_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text


@dataclass
class CrassTask(FewShotTask):
    """CRASS: rows from the repository CSV (downloaded and cached) or a local copy."""

    def rows(self) -> list[dict[str, Any]]:
        if self.source.kind == "url":
            cache = Path(os.environ.get("CAPEVAL_CACHE", "~/.cache/capeval")).expanduser() / "crass"
            return read_crass_csv(fetch_crass_csv(cache))
        path = Path(self.source.path)
        if path.is_dir():
            found = sorted(path.glob("*.csv"))
            if not found:
                raise DatasetError(f"no CRASS .csv file under {path}")
            path = found[0]
        if path.suffix == ".csv":
            try:
                return read_crass_csv(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as e:
                raise DatasetError(f"cannot read {path}: {e}") from None
        from capeval.tasks.sources import read_file

        return read_file(path)  # jsonl / parquet with the CSV's column names

    def load(self, split: str | None = None, limit: int | None = None, strict: bool = False) -> LoadedSamples:
        if (split or self.split) == "train":
            return LoadedSamples([crass_row(r, i, self) for i, r in enumerate(EXEMPLARS)], [])
        samples: list[Sample] = []
        malformed: list[str] = []
        rows = self.rows()
        for i, row in enumerate(rows):
            if limit is not None and len(samples) >= limit:
                break
            try:
                if MALFORMED in row:
                    raise ValueError(row[MALFORMED])
                samples.append(crass_row(row, i, self))
            except (KeyError, ValueError, TypeError) as e:
                if strict:
                    raise DatasetError(
                        f"malformed row: crass row {i}: {e}", "fix the row or run without --strict"
                    ) from None
                malformed.append(f"crass test row {i}: {type(e).__name__}: {e}")
        refuse_all_malformed("crass test", rows, len(samples), malformed)
        return LoadedSamples(samples, malformed)

    def exemplars_for(self, sample: Sample, pool: Any, config: PromptConfig) -> list[Sample]:
        k = self.shots if config.shots is None else config.shots
        return list(pool)[:k]  # the three fixed exemplars, in order

    def fewshot_warning(self, shots: int) -> str | None:
        return None  # the exemplars are the three fixed ones, never rows of the file


@register_task("crass")
def crass(data: str | None = None) -> CrassTask:
    if data is not None and not Path(data).expanduser().exists():
        raise DatasetError(f"local dataset path does not exist: {data}")
    return CrassTask(
        name="crass",
        source=Source("local", str(Path(data).expanduser())) if data else Source("url", CRASS_URL),
        split="test",
        fewshot_split="train",
        shots=3,
        output_type="multiple_choice",
        mc_mode="generate",
        layout=CRASS_LAYOUT,
        variants=CRASS_VARIANTS,
        generation=GenerationParams(max_tokens=8, stop=("\n",)),
        metrics=("acc",),
        capabilities=("Reasoning", "Counterfactual"),
        description="CRASS counterfactual reasoning, 3 fixed exemplars, letter generated (as INSTRUCTEVAL)",
        row_to_sample_fn=crass_row,
        settings={"original": CRASS_URL, "choice order": f"shuffled, seed {SHUFFLE_SEED} + PCTID"},
    )
