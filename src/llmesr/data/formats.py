"""Readers for the interaction-log formats llmesr accepts.

Every reader returns an :class:`InteractionLog` in *original* ids; remapping to contiguous
integers happens later in :mod:`llmesr.data.dataset`, so that readers stay simple and the id maps
live in one place.
"""

from __future__ import annotations

import io
import itertools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmesr.data.atomic import read_atomic, read_atomic_items
from llmesr.data.parsing import (
    PARQUET_SUFFIXES,
    SUPPORTED,
    TABLE_SEPARATORS,
    DataFormatError,
    InteractionLog,
    ids_to_str,
    index_item_info,
    order_by_user_time,
    read_text,
    to_float,
)

# ----------------------------------------------------------------------------------------------
# sequences.txt + items.jsonl
# ----------------------------------------------------------------------------------------------


def _read_items_jsonl(path: Path, id_field: str = "item_id") -> pd.DataFrame:
    """Read one JSON object per line into a frame indexed by the str item id.

    Parsing line by line (rather than ``pd.read_json(lines=True)``) gives line numbers in errors
    and keeps field values exactly as written: pandas would turn numeric-looking strings into numbers.
    """
    text = read_text(path)
    records: list[dict] = []
    ids: list[str] = []
    line_numbers: list[int] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path}:{number}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise DataFormatError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
        if id_field not in obj:
            raise DataFormatError(f"{path}:{number}: object has no {id_field!r} field")
        raw = obj.pop(id_field)
        # bool is an int subclass; True would otherwise become the id "True".
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise DataFormatError(f"{path}:{number}: {id_field} must be a string or integer, got {raw!r}")
        if isinstance(raw, str) and not raw.strip():
            raise DataFormatError(f"{path}:{number}: empty {id_field}")
        if isinstance(raw, str) and "\x00" in raw:
            raise DataFormatError(f"{path}:{number}: {id_field} contains a NUL character (\\u0000)")
        _check_text_fields(obj, f"{path}:{number}")
        ids.append(str(raw))
        records.append(obj)
        line_numbers.append(number)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame(index=range(0))
    return index_item_info(frame, np.array(ids, dtype=object), lambda i: f"{path}:{line_numbers[i]}")


NUMBER_FIELDS = ("price",)


def _check_text_fields(obj: dict, where: str) -> None:
    """Every field of an item line is text for the prompts: a string, a list of strings (Beauty's
    ``attributes``, Yelp's ``categories``) or null (missing); a number only where the field is one
    (``price``, as ``llmesr prepare`` writes it). Anything else (``"title": 5``, an object) would be
    stringified into the prompt; refused, naming the line and the field."""
    for name, value in obj.items():
        if value is None or isinstance(value, str):
            continue
        if name in NUMBER_FIELDS and isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value):
                continue
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            continue
        shown = type(value).__name__ + ("" if isinstance(value, (dict, list)) else f" {value!r}")
        raise DataFormatError(
            f"{where}: field {name!r} must be a string, or a list of strings, not {shown[:80]} "
            "(quote numbers that are text)"
        )


def read_sequences_dir(path: Path) -> InteractionLog:
    """Read ``sequences.txt`` (``user item item ...`` per line, in time order) and ``items.jsonl``.

    ``path`` is the directory, or the ``sequences.txt`` file itself. Blank lines are skipped;
    timestamps are ``None`` because only the order is known.
    """
    path = Path(path)
    seq_path = path if path.is_file() else path / "sequences.txt"
    directory = seq_path.parent
    if not seq_path.is_file():
        raise DataFormatError(f"{directory}: no sequences.txt in this directory")
    text = read_text(seq_path)

    # One split per line is needed to know where each user's items end; it runs at C speed
    # (a list comprehension over lines, never over individual interactions).
    tokens = [line.split() for line in text.split("\n")]
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    lonely = np.flatnonzero(lengths == 1)
    if lonely.size:
        i = int(lonely[0])
        raise DataFormatError(f"{seq_path}:{i + 1}: empty history for user {tokens[i][0]!r}")
    rows = np.flatnonzero(lengths > 0)
    if rows.size == 0:
        raise DataFormatError(f"{seq_path}: no user sequences in file")

    user_ids = np.array([tokens[i][0] for i in rows], dtype=object)
    dup = np.flatnonzero(pd.Index(user_ids).duplicated())
    if dup.size:
        second = int(dup[0])
        first = int(np.flatnonzero(user_ids == user_ids[second])[0])
        raise DataFormatError(
            f"{seq_path}:{rows[second] + 1}: duplicate user {user_ids[second]!r} "
            f"(first seen on line {rows[first] + 1})"
        )
    users = np.repeat(user_ids, lengths[rows] - 1)
    items = np.fromiter(
        itertools.chain.from_iterable(tokens[i][1:] for i in rows), dtype=object, count=len(users)
    )

    items_path = directory / "items.jsonl"
    item_info = _read_items_jsonl(items_path) if items_path.is_file() else None
    return InteractionLog(
        users=users, items=items, timestamps=None, item_info=item_info, source=str(directory)
    )


# ----------------------------------------------------------------------------------------------
# CSV / TSV / Parquet tables
# ----------------------------------------------------------------------------------------------


def _load_table(path: Path, sep: str | None, columns: list[str] | None = None) -> pd.DataFrame:
    """Load a table with text cells kept verbatim: ``"007"`` stays ``"007"``, ``"NA"`` stays ``"NA"``."""
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        if sep is not None:
            raise DataFormatError(f"{path}: sep={sep!r} does not apply to a Parquet file")
        try:
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
        except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
            raise DataFormatError(f"{path}: cannot read Parquet file: {exc}") from None
        # Check against the schema so the error lists every column, then read only what is needed.
        if columns is not None:
            _require_columns(names, columns, path)
        try:
            return pd.read_parquet(path, columns=columns)
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"{path}: cannot read Parquet file: {exc}") from None
    if sep is None:
        if suffix not in TABLE_SEPARATORS:
            raise DataFormatError(
                f"{path}: unknown table suffix {suffix!r}; use .csv, .tsv, .txt, .parquet or .pq, "
                "or pass sep= for a delimited text file"
            )
        sep = TABLE_SEPARATORS[suffix]
    text = read_text(path)
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, na_filter=False, engine="c")
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{path}: empty file (no header line)") from None
    except pd.errors.ParserError as exc:
        raise DataFormatError(f"{path}: {exc}") from None
    return frame


def _require_columns(available: Sequence[str], wanted: Sequence[str], path: Path) -> None:
    missing = [c for c in wanted if c not in available]
    if missing:
        raise DataFormatError(
            f"{path}: missing column {missing[0]!r}; the file has columns {list(available)}"
        )


def _read_item_file(path: Path, item_col: str) -> pd.DataFrame:
    """Item text from a JSONL, RecBole ``.item`` or table file, indexed by the str item id."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_items_jsonl(path, id_field=item_col)
    if suffix == ".item":
        return read_atomic_items(path)
    frame = _load_table(path, sep=None)
    _require_columns(list(frame.columns), [item_col], path)

    def locate(i: int) -> str:
        return f"{path}: row {i + 1}"

    ids = ids_to_str(frame[item_col], item_col, locate)
    return index_item_info(frame.drop(columns=[item_col]), ids, locate)


def read_table(
    path: Path,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str | None = "timestamp",
    sep: str | None = None,
    items_path: Path | None = None,
) -> InteractionLog:
    """Read a CSV / TSV / Parquet interaction table, one row per interaction.

    The format follows the suffix (``.csv`` comma, ``.tsv``/``.txt`` tab, ``.parquet``/``.pq``);
    ``sep`` forces a delimited text file with that separator. Ids are kept as text. With a
    ``time_col`` each user's rows are sorted by time (stable: ties keep file order); with
    ``time_col=None`` the file order is taken as the time order. Error messages name the data row
    counting from 1 after the header. ``items_path`` optionally names an item text file
    (CSV/TSV/Parquet/JSONL/.item) whose id column is called ``item_col``.
    """
    path = Path(path)
    wanted = [user_col, item_col] + ([time_col] if time_col is not None else [])
    frame = _load_table(path, sep, columns=wanted)
    _require_columns(list(frame.columns), wanted, path)
    if len(frame) == 0:
        raise DataFormatError(f"{path}: no interactions (the table has a header but no rows)")

    def locate(i: int) -> str:
        return f"{path}: row {i + 1}"

    users = ids_to_str(frame[user_col], f"column {user_col!r}", locate)
    items = ids_to_str(frame[item_col], f"column {item_col!r}", locate)
    timestamps = None
    if time_col is not None:
        timestamps = to_float(frame[time_col], f"column {time_col!r}", locate)
        order = order_by_user_time(users, timestamps)
        users, items, timestamps = users[order], items[order], timestamps[order]
    item_info = _read_item_file(Path(items_path), item_col) if items_path is not None else None
    return InteractionLog(
        users=users, items=items, timestamps=timestamps, item_info=item_info, source=str(path)
    )


# ----------------------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------------------


# Dataset format -> reader (path, options -> InteractionLog): a new format is one reader and one entry
# (and a rule in detect_format when it can be told from the path).
READERS: dict[str, Callable[..., InteractionLog]] = {
    "sequences": read_sequences_dir,
    "atomic": read_atomic,
    "table": read_table,
}


def detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "sequences.txt").is_file():
            return "sequences"
        if any(path.glob("*.inter")):
            return "atomic"  # read_atomic reports the ambiguity if there are several
        raise DataFormatError(f"{path}: cannot tell the dataset format; supported: {SUPPORTED}")
    suffix = path.suffix.lower()
    if suffix == ".inter":
        return "atomic"
    if suffix in (".csv", ".tsv", *PARQUET_SUFFIXES):
        return "table"
    if path.name == "sequences.txt":
        return "sequences"
    raise DataFormatError(
        f"{path}: cannot tell the dataset format; supported: {SUPPORTED} "
        "(pass format='table' for other delimited files)"
    )


def read_dataset(path: str | Path, *, format: str = "auto", **table_kwargs: Any) -> InteractionLog:
    """Read an interaction log in any supported format.

    ``format`` is ``"auto"`` (decided from the path), ``"sequences"``, ``"atomic"`` or ``"table"``.
    ``table_kwargs`` (``user_col``, ``item_col``, ``time_col``, ``sep``, ``items_path``) go to
    :func:`read_table`; passing them for another format is a ``TypeError`` rather than being
    silently ignored.
    """
    path = Path(path)
    if format != "auto" and format not in READERS:
        raise DataFormatError(f"unknown dataset format {format!r}; expected 'auto' or one of {list(READERS)}")
    if not path.exists():
        raise DataFormatError(f"no such file or directory: {path}")
    if format == "auto":
        format = detect_format(path)
    if table_kwargs and format != "table":
        raise TypeError(f"options {sorted(table_kwargs)} only apply to format='table', not {format!r}")
    return READERS[format](path, **table_kwargs)
