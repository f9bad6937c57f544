"""Is the judge trustworthy? Rate responses that carry human ratings and measure agreement with people.

Sources: CrossEval-format files (each reference response with its two human ratings; when rating
reference i the judge sees only the OTHER references, as the authors' meta-evaluation does; the loader is
`capeval.crosseval.human_ratings.crosseval_rated`), MT-Bench
human pairwise judgments (`lmsys/mt_bench_human_judgments` rows), or a user CSV with columns
prompt, response, human_score and optionally capability.
"""


from capeval.judge.check.agreement import (
    AblationRow,
    CheckReport,
    authors_summary,
    check_ratings,
    check_votes,
    save_check_run,
)
from capeval.judge.check.data import (
    CROSSEVAL_FIELDS,
    CSV_FIELDS,
    HUB_SPLITS,
    MTBENCH_FIELDS,
    HumanVote,
    RatedResponse,
    SourceFormat,
    csv_rated,
    detect_format,
    read_rows,
)
from capeval.judge.check.mtbench_votes import (
    HUMAN_WINNER,
    MTBENCH_CATEGORIES,
    MTBENCH_REFERENCE_CATEGORIES,
    mtbench_category,
    mtbench_votes,
    packaged_mtbench_references,
)
from capeval.judge.core import JudgeItem

__all__ = [
    "CROSSEVAL_FIELDS",
    "CSV_FIELDS",
    "HUB_SPLITS",
    "HUMAN_WINNER",
    "MTBENCH_CATEGORIES",
    "MTBENCH_FIELDS",
    "MTBENCH_REFERENCE_CATEGORIES",
    "AblationRow",
    "CheckReport",
    "HumanVote",
    "JudgeItem",
    "RatedResponse",
    "SourceFormat",
    "authors_summary",
    "check_ratings",
    "check_votes",
    "csv_rated",
    "detect_format",
    "mtbench_category",
    "mtbench_votes",
    "packaged_mtbench_references",
    "read_rows",
    "save_check_run",
]
