"""Shared pieces of the format readers: the error type, the interaction log they all return,
and the checks that turn raw columns into validated ids and timestamps."""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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

TABLE_SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}
PARQUET_SUFFIXES = (".parquet", ".pq")
ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
SUPPORTED = (
    "a directory holding sequences.txt (and optionally items.jsonl); "
    "a directory holding one RecBole <name>.inter (and optionally <name>.item), or the .inter file; "
    "a .csv, .tsv, .parquet or .pq table"
)


def read_text(path: Path) -> str:
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
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataFormatError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x}); re-encode the file as UTF-8"
        ) from None
    # NUL never occurs in text; it does in UTF-16 without a BOM (which decodes as "valid" UTF-8
    # with a NUL after every ASCII character) and in binary files given by mistake.
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise DataFormatError(
            f"{path}:{line}: contains a NUL byte: a binary or UTF-16 file? re-encode the file as UTF-8"
        )
    return text


def ids_to_str(values: pd.Series, what: str, locate: Callable[[int], str]) -> np.ndarray:
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


def to_float(values: pd.Series, what: str, locate: Callable[[int], str]) -> np.ndarray:
    """Parse a numeric (timestamp) column to float64, naming the first value that is not a finite number.

    Datetime columns (Parquet can store them typed) become seconds since the Unix epoch, and so do
    text columns of ISO-8601 date-times (a CSV's ``2024-03-01T10:00:00Z``): parsed by pandas, an
    offset converted to UTC, a time without one taken as UTC, exactly like a Parquet datetime. A
    text column is read as date-times when its first value is one and is not a number.
    """
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _finite(_epoch_seconds(values), values, f"{what} is not a finite number", locate)
    try:
        # Fast path: a straight cast is several times quicker than to_numeric on text columns.
        parsed = np.asarray(values.astype(np.float64), dtype=np.float64)
    except (TypeError, ValueError):
        parsed = np.asarray(pd.to_numeric(values, errors="coerce"), dtype=np.float64)
        if (
            parsed.size
            and not np.isfinite(parsed[0])
            and pd.api.types.infer_dtype(values, skipna=True) == "string"
        ):
            times = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
            if pd.isna(times.iloc[0]):
                what = f"{what} is not a finite number or an ISO-8601 date-time"
                return _finite(parsed, values, what, locate)
            return _finite(_epoch_seconds(times), values, f"{what} is not an ISO-8601 date-time", locate)
    return _finite(parsed, values, f"{what} is not a finite number", locate)


def _epoch_seconds(values: pd.Series) -> np.ndarray:
    """Seconds since the Unix epoch of a datetime column (aware in UTC, naive taken as UTC), NaT as NaN."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    # Whatever the stored resolution (pandas may use s, ms, us or ns).
    return np.asarray((values - pd.Timestamp("1970-01-01")) / pd.Timedelta(seconds=1), dtype=np.float64)


def _finite(out: np.ndarray, values: pd.Series, problem: str, locate: Callable[[int], str]) -> np.ndarray:
    """``out``, or a DataFormatError naming the first row whose value is not finite and the raw value."""
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        i = int(bad[0])
        raise DataFormatError(f"{locate(i)}: {problem}: {values.iloc[i]!r}")
    return out


def order_by_user_time(users: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """Row order that groups each user's rows and sorts them by time, ties keeping file order.

    ``np.lexsort`` is stable, so equal (user, time) pairs keep their relative file order. Users end
    up grouped in order of first appearance; the log contract allows any user order.
    """
    codes, _ = pd.factorize(users)
    return np.lexsort((timestamps, codes))


def index_item_info(frame: pd.DataFrame, ids: np.ndarray, locate: Callable[[int], str]) -> pd.DataFrame:
    """Index item text by id, refusing duplicate ids (which one would win is otherwise arbitrary)."""
    index = pd.Index(ids, name="item_id")
    dup = np.flatnonzero(index.duplicated())
    if dup.size:
        second = int(dup[0])
        first = int(np.flatnonzero(ids == ids[second])[0])
        raise DataFormatError(
            f"{locate(second)}: duplicate item_id {ids[second]!r} (first seen at {locate(first)})"
        )
    _refuse_nul(frame, locate)
    frame = frame.copy()
    frame.index = index
    return frame


def _refuse_nul(frame: pd.DataFrame, locate: Callable[[int], str]) -> None:
    """Refuse item text holding a NUL character: no prompt can carry one (the embedding cache keys
    batches on NUL-joined texts and refuses them), and in text it is always damage or a mistake.
    Text files cannot hold a raw NUL (:func:`read_text`); JSON's ``\\u0000`` and Parquet strings can."""
    for column in frame.columns:
        dtype = frame[column].dtype
        if not (pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)):
            continue  # numbers, booleans and datetimes hold no text
        for i, value in enumerate(frame[column].tolist()):
            if _has_nul(value):
                raise DataFormatError(f"{locate(i)}: field {column!r} contains a NUL character (\\u0000)")


def _has_nul(value: object) -> bool:
    """Whether a text value, or any string in a list of them, holds a NUL character."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, (list, tuple, np.ndarray)):
        return any(isinstance(v, str) and "\x00" in v for v in value)
    return False
