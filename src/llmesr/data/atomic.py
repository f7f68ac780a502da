"""Reader for RecBole atomic files (``name.inter`` / ``name.item`` with ``field:type`` headers)."""

from __future__ import annotations

import csv
import io
import operator
from pathlib import Path

import numpy as np
import pandas as pd

from llmesr.data.parsing import (
    ATOMIC_TYPES,
    DataFormatError,
    InteractionLog,
    ids_to_str,
    index_item_info,
    order_by_user_time,
    read_text,
    to_float,
)

# ----------------------------------------------------------------------------------------------
# RecBole atomic files
# ----------------------------------------------------------------------------------------------


def _read_atomic_file(path: Path) -> tuple[pd.DataFrame, dict[str, str], np.ndarray]:
    """Read one RecBole atomic file: a ``name:type`` header line, then tab-separated rows.

    Returns the frame (all cells as str, columns named by field name), the field types, and the
    1-based file line number of each row so that later checks can point at the right line.
    """
    text = read_text(path)
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
                f"'user_id:token', with a type among {list(ATOMIC_TYPES)}"
            )
        if kind not in ATOMIC_TYPES:
            raise DataFormatError(
                f"{path}:1: field {name!r} has unknown type {kind!r}; expected one of {list(ATOMIC_TYPES)}"
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


def read_atomic_items(path: Path) -> pd.DataFrame:
    """Item fields of a RecBole ``.item`` file, float fields as float64, indexed by item_id."""
    frame, types, line_numbers = _read_atomic_file(path)
    if "item_id" not in types:
        raise DataFormatError(f"{path}:1: header has no item_id field; fields are {list(types)}")

    def locate(i: int) -> str:
        return f"{path}:{line_numbers[i]}"

    ids = ids_to_str(frame["item_id"], "item_id", locate)
    for name, kind in types.items():
        if kind == "float" and name != "item_id":
            frame[name] = to_float(frame[name], name, locate)
    return index_item_info(frame.drop(columns=["item_id"]), ids, locate)


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

    users = ids_to_str(frame["user_id"], "user_id", locate)
    items = ids_to_str(frame["item_id"], "item_id", locate)
    timestamps = None
    if "timestamp" in types:
        timestamps = to_float(frame["timestamp"], "timestamp", locate)
        order = order_by_user_time(users, timestamps)
        users, items, timestamps = users[order], items[order], timestamps[order]

    item_path = inter_path.with_suffix(".item")
    item_info = read_atomic_items(item_path) if item_path.is_file() else None
    return InteractionLog(
        users=users, items=items, timestamps=timestamps, item_info=item_info, source=str(inter_path)
    )
