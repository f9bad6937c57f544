"""The SQLite store: model-call cache, runs, samples, scores, human ratings and pairwise votes."""

from capeval.store.db import Store, default_db_path, run_result_from_dict, run_result_to_dict
from capeval.store.migrations import MIGRATIONS, Migration, latest_version, migration

__all__ = [
    "MIGRATIONS",
    "Migration",
    "Store",
    "default_db_path",
    "latest_version",
    "migration",
    "run_result_from_dict",
    "run_result_to_dict",
]
