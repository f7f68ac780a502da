"""Readers for the interaction-log formats llmesr accepts.

Every reader returns an :class:`InteractionLog` in *original* ids; remapping to contiguous
integers happens later in :mod:`llmesr.data.dataset`, so that readers stay simple and the id maps
live in one place.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


class DataFormatError(ValueError):
    """Input data that cannot be read. The message names the file (and line or column) at fault."""


@dataclass
class InteractionLog:
    """Interactions in original ids, one row per interaction.

    ``users`` and ``items`` are numpy arrays of ``str`` (dtype object). Rows are ordered so that
    each user's interactions appear in time order (ties keep file order); users may interleave.
    ``timestamps`` is float64 aligned with the rows, or ``None`` when only the order is known.
    ``item_info`` holds item text fields, indexed by original item id (str); it may list items
    that never occur in the log, and may miss items that do.
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray | None
    item_info: pd.DataFrame | None
    source: str


# ----------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------

_TABLE_SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}
_PARQUET_SUFFIXES = (".parquet", ".pq")
_ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
_FORMATS = ("sequences", "atomic", "table")
_SUPPORTED = (
    "a directory holding sequences.txt (and optionally items.jsonl); "
    "a directory holding one RecBole <name>.inter (and optionally <name>.item), or the .inter file; "
    "a .csv, .tsv, .parquet or .pq table"
)


def _read_text(path: Path) -> str:
    """Read a whole file as UTF-8, naming the line of the first undecodable byte.

    We decode ourselves rather than letting pandas do it: pandas reports only a byte offset in an
    internal buffer, which does not help anyone find the bad line.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
    # A BOM written by some editors would otherwise become part of the first id or header field.
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataFormatError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x}); re-encode the file as UTF-8"
        ) from None


def _ids_to_str(values: pd.Series, what: str, locate: Callable[[int], str]) -> np.ndarray:
    """Turn an id column into an object array of str, rejecting empty and non-id values.

    Integer columns (Parquet stores them typed) become their decimal text, which is what the same
    ids look like in a text file. Float columns are refused: ``1.0`` vs ``1`` would silently split
    one id in two, and floats in an id column usually mean missing values were filled with NaN.
    """
    dtype = values.dtype
    position = np.flatnonzero(values.isna().to_numpy())
    if position.size:
        raise DataFormatError(f"{locate(int(position[0]))}: empty {what}")
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        raise DataFormatError(f"{locate(0)}: {what} holds {dtype} values; ids must be strings or integers")
    if pd.api.types.is_object_dtype(dtype):
        kind = pd.api.types.infer_dtype(values, skipna=False)
        if kind not in ("string", "integer", "empty"):
            raise DataFormatError(f"{locate(0)}: {what} holds {kind} values; ids must be strings or integers")
    as_str = values.astype(str)
    # Whitespace-only ids are as useless as empty ones and usually a stray separator.
    empty = np.flatnonzero((as_str.str.strip() == "").to_numpy())
    if empty.size:
        raise DataFormatError(f"{locate(int(empty[0]))}: empty {what}")
    return as_str.to_numpy(dtype=object)


def _to_float(values: pd.Series, what: str, locate: Callable[[int], str]) -> np.ndarray:
    """Parse a numeric (timestamp) column to float64, naming the first value that is not a finite number.

    Datetime columns (Parquet can store them typed) become seconds since the Unix epoch.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(values.dtype):
        # Seconds since the epoch, whatever the stored resolution (pandas may use s, ms, us or ns).
        parsed = (values - pd.Timestamp("1970-01-01")) / pd.Timedelta(seconds=1)
    else:
        try:
            # Fast path: a straight cast is several times quicker than to_numeric on text columns.
            parsed = values.astype(np.float64)
        except (TypeError, ValueError):
            parsed = pd.to_numeric(values, errors="coerce")
    out = np.asarray(parsed, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        i = int(bad[0])
        raise DataFormatError(f"{locate(i)}: {what} is not a finite number: {values.iloc[i]!r}")
    return out


def _order_by_user_time(users: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """Row order that groups each user's rows and sorts them by time, ties keeping file order.

    ``np.lexsort`` is stable, so equal (user, time) pairs keep their relative file order. Users end
    up grouped in order of first appearance; the log contract allows any user order.
    """
    codes, _ = pd.factorize(users)
    return np.lexsort((timestamps, codes))


def _index_item_info(frame: pd.DataFrame, ids: np.ndarray, locate: Callable[[int], str]) -> pd.DataFrame:
    """Index item text by id, refusing duplicate ids (which one would win is otherwise arbitrary)."""
    index = pd.Index(ids, name="item_id")
    dup = np.flatnonzero(index.duplicated())
    if dup.size:
        second = int(dup[0])
        first = int(np.flatnonzero(ids == ids[second])[0])
        raise DataFormatError(
            f"{locate(second)}: duplicate item_id {ids[second]!r} (first seen at {locate(first)})"
        )
    frame = frame.copy()
    frame.index = index
    return frame


# ----------------------------------------------------------------------------------------------
# sequences.txt + items.jsonl
# ----------------------------------------------------------------------------------------------


def _read_items_jsonl(path: Path, id_field: str = "item_id") -> pd.DataFrame:
    """Read one JSON object per line into a frame indexed by the str item id.

    Parsing line by line (rather than ``pd.read_json(lines=True)``) gives line numbers in errors
    and keeps field values exactly as written: pandas would turn numeric-looking strings into numbers.
    """
    text = _read_text(path)
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
        ids.append(str(raw))
        records.append(obj)
        line_numbers.append(number)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame(index=range(0))
    return _index_item_info(frame, np.array(ids, dtype=object), lambda i: f"{path}:{line_numbers[i]}")


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
    text = _read_text(seq_path)

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
    if suffix in _PARQUET_SUFFIXES:
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
        if suffix not in _TABLE_SEPARATORS:
            raise DataFormatError(
                f"{path}: unknown table suffix {suffix!r}; use .csv, .tsv, .txt, .parquet or .pq, "
                "or pass sep= for a delimited text file"
            )
        sep = _TABLE_SEPARATORS[suffix]
    text = _read_text(path)
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
        return _read_atomic_items(path)
    frame = _load_table(path, sep=None)
    _require_columns(list(frame.columns), [item_col], path)

    def locate(i: int) -> str:
        return f"{path}: row {i + 1}"

    ids = _ids_to_str(frame[item_col], item_col, locate)
    return _index_item_info(frame.drop(columns=[item_col]), ids, locate)


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

    users = _ids_to_str(frame[user_col], f"column {user_col!r}", locate)
    items = _ids_to_str(frame[item_col], f"column {item_col!r}", locate)
    timestamps = None
    if time_col is not None:
        timestamps = _to_float(frame[time_col], f"column {time_col!r}", locate)
        order = _order_by_user_time(users, timestamps)
        users, items, timestamps = users[order], items[order], timestamps[order]
    item_info = _read_item_file(Path(items_path), item_col) if items_path is not None else None
    return InteractionLog(
        users=users, items=items, timestamps=timestamps, item_info=item_info, source=str(path)
    )


# ----------------------------------------------------------------------------------------------
# RecBole atomic files
# ----------------------------------------------------------------------------------------------


def _read_atomic_file(path: Path) -> tuple[pd.DataFrame, dict[str, str], np.ndarray]:
    """Read one RecBole atomic file: a ``name:type`` header line, then tab-separated rows.

    Returns the frame (all cells as str, columns named by field name), the field types, and the
    1-based file line number of each row so that later checks can point at the right line.
    """
    text = _read_text(path)
    lines = text.split("\n")
    header = lines[0].rstrip("\r")
    if not header.strip():
        raise DataFormatError(f"{path}:1: missing header line of name:type fields")
    types: dict[str, str] = {}
    for token in header.split("\t"):
        name, colon, kind = token.strip().partition(":")
        if not colon or not name:
            raise DataFormatError(
                f"{path}:1: header field {token!r} has no type; RecBole headers look like "
                f"'user_id:token', with a type among {list(_ATOMIC_TYPES)}"
            )
        if kind not in _ATOMIC_TYPES:
            raise DataFormatError(
                f"{path}:1: field {name!r} has unknown type {kind!r}; expected one of {list(_ATOMIC_TYPES)}"
            )
        if name in types:
            raise DataFormatError(f"{path}:1: field {name!r} appears twice in the header")
        types[name] = kind

    # Validate the field count of every line before handing the text to pandas' C parser: the
    # parser silently pads short rows, and its message for long rows is hard to read.
    body = lines[1:]
    if body and body[-1] == "":
        body.pop()  # the newline that ends the last row
    blank = np.fromiter((not line.rstrip("\r") for line in body), dtype=bool, count=len(body))
    tabs = np.fromiter(map(operator.methodcaller("count", "\t"), body), dtype=np.int64, count=len(body))
    wrong = np.flatnonzero(~blank & (tabs != len(types) - 1))
    if wrong.size:
        i = int(wrong[0])
        raise DataFormatError(
            f"{path}:{i + 2}: expected {len(types)} tab-separated fields, found {tabs[i] + 1}"
        )
    line_numbers = np.flatnonzero(~blank) + 2
    if line_numbers.size == 0:
        frame = pd.DataFrame({name: pd.Series([], dtype=object) for name in types})
    else:
        # QUOTE_NONE: RecBole has no quoting, and titles such as `"Crocodile" Dundee` must stay as written.
        frame = pd.read_csv(
            io.StringIO(text),
            sep="\t",
            header=None,
            skiprows=1,
            names=list(types),
            dtype=str,
            na_filter=False,
            quoting=csv.QUOTE_NONE,
            engine="c",
            skip_blank_lines=True,
        )
    if len(frame) != line_numbers.size:  # pragma: no cover - guards the two parsers agreeing
        raise DataFormatError(f"{path}: parsed {len(frame)} rows but found {line_numbers.size} data lines")
    return frame, types, line_numbers


def _read_atomic_items(path: Path) -> pd.DataFrame:
    """Item fields of a RecBole ``.item`` file, float fields as float64, indexed by item_id."""
    frame, types, line_numbers = _read_atomic_file(path)
    if "item_id" not in types:
        raise DataFormatError(f"{path}:1: header has no item_id field; fields are {list(types)}")

    def locate(i: int) -> str:
        return f"{path}:{line_numbers[i]}"

    ids = _ids_to_str(frame["item_id"], "item_id", locate)
    for name, kind in types.items():
        if kind == "float" and name != "item_id":
            frame[name] = _to_float(frame[name], name, locate)
    return _index_item_info(frame.drop(columns=["item_id"]), ids, locate)


def read_atomic(path: Path) -> InteractionLog:
    """Read RecBole atomic files: ``<name>.inter`` and, when present, ``<name>.item``.

    ``path`` is the directory (which must hold exactly one ``.inter`` file) or the ``.inter`` file.
    ``user_id`` and ``item_id`` fields are required; with a ``timestamp`` field each user's rows
    are sorted by it (stable), otherwise file order is kept.
    """
    path = Path(path)
    if path.is_dir():
        inters = sorted(path.glob("*.inter"))
        if not inters:
            raise DataFormatError(f"{path}: no .inter file in this directory")
        if len(inters) > 1:
            raise DataFormatError(
                f"{path}: several .inter files ({', '.join(p.name for p in inters)}); pass one of them"
            )
        inter_path = inters[0]
    else:
        inter_path = path
        if inter_path.suffix != ".inter":
            raise DataFormatError(f"{inter_path}: not a RecBole .inter file")

    frame, types, line_numbers = _read_atomic_file(inter_path)
    for field in ("user_id", "item_id"):
        if field not in types:
            raise DataFormatError(f"{inter_path}:1: header has no {field} field; fields are {list(types)}")
    if len(frame) == 0:
        raise DataFormatError(f"{inter_path}: no interactions")

    def locate(i: int) -> str:
        return f"{inter_path}:{line_numbers[i]}"

    users = _ids_to_str(frame["user_id"], "user_id", locate)
    items = _ids_to_str(frame["item_id"], "item_id", locate)
    timestamps = None
    if "timestamp" in types:
        timestamps = _to_float(frame["timestamp"], "timestamp", locate)
        order = _order_by_user_time(users, timestamps)
        users, items, timestamps = users[order], items[order], timestamps[order]

    item_path = inter_path.with_suffix(".item")
    item_info = _read_atomic_items(item_path) if item_path.is_file() else None
    return InteractionLog(
        users=users, items=items, timestamps=timestamps, item_info=item_info, source=str(inter_path)
    )


# ----------------------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "sequences.txt").is_file():
            return "sequences"
        if any(path.glob("*.inter")):
            return "atomic"  # read_atomic reports the ambiguity if there are several
        raise DataFormatError(f"{path}: cannot tell the dataset format; supported: {_SUPPORTED}")
    suffix = path.suffix.lower()
    if suffix == ".inter":
        return "atomic"
    if suffix in (".csv", ".tsv", *_PARQUET_SUFFIXES):
        return "table"
    if path.name == "sequences.txt":
        return "sequences"
    raise DataFormatError(
        f"{path}: cannot tell the dataset format; supported: {_SUPPORTED} "
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
    if format != "auto" and format not in _FORMATS:
        raise DataFormatError(
            f"unknown dataset format {format!r}; expected 'auto' or one of {list(_FORMATS)}"
        )
    if not path.exists():
        raise DataFormatError(f"no such file or directory: {path}")
    if format == "auto":
        format = detect_format(path)
    if table_kwargs and format != "table":
        raise TypeError(f"options {sorted(table_kwargs)} only apply to format='table', not {format!r}")
    if format == "sequences":
        return read_sequences_dir(path)
    if format == "atomic":
        return read_atomic(path)
    return read_table(path, **table_kwargs)
