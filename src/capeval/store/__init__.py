"""The SQLite store: model-call cache, runs, samples, scores, human ratings and pairwise votes."""

from capeval.store.db import Store, default_db_path, run_result_from_dict, run_result_to_dict

__all__ = ["Store", "default_db_path", "run_result_from_dict", "run_result_to_dict"]
