"""``llmesr recommend BUNDLE``: recommendations for one history or for every user of a file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from llmesr.checkpoint import first_line
from llmesr.data.parsing import read_text, to_float
from llmesr.errors import ConfigError
from llmesr.io import atomic_write_parquet, atomic_write_text
from llmesr.serving.bundle import Bundle

CHUNK = 1024  # histories per encoder pass


def read_histories(path: Path) -> tuple[list[str], list[list[str]]]:
    """Users and their histories from a CSV/TSV/Parquet file with ``user_id`` and ``item_id``
    columns; rows are in time order, or sorted by a ``timestamp`` column when there is one."""
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    parquet = suffix in (".parquet", ".pq")
    # Text is decoded here so that a wrong encoding names its line (DataFormatError).
    text = None if parquet else read_text(path)
    try:
        if text is None:
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(io.StringIO(text), sep="\t" if suffix == ".tsv" else ",", dtype=str)
    except (ValueError, OSError) as err:  # pandas' and pyarrow's parser errors are ValueErrors
        raise ConfigError(f"{path}: cannot read ({first_line(err)})") from None
    missing = {"user_id", "item_id"} - set(frame.columns)
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    if frame.empty:
        raise ConfigError(f"{path}: no rows")

    def locate(i: int) -> str:
        return f"{path}: row {i + 1}" if parquet else f"{path}:{i + 2}"  # line 1 is the header

    if frame[["user_id", "item_id"]].isna().any().any():
        row = int(np.flatnonzero(frame[["user_id", "item_id"]].isna().any(axis=1))[0])
        raise ConfigError(f"{locate(row)}: empty user_id or item_id")
    if "timestamp" in frame.columns:
        # Text columns would sort as strings ("10" before "9"): parsed, and refused if not numbers.
        frame = frame.assign(timestamp=to_float(frame["timestamp"], "timestamp", locate))
        frame = frame.sort_values("timestamp", kind="stable")
    frame = frame.astype({"user_id": str, "item_id": str})
    groups = frame.groupby("user_id", sort=False)["item_id"]
    return list(groups.groups), [list(items) for _, items in groups]


def recommend_frame(
    bundle: Bundle, users: list[str], histories: list[list[str]], k: int, exclude_seen: bool
) -> pd.DataFrame:
    parts = []
    state = bundle.state  # one catalogue snapshot for every ranking and title below
    for start in range(0, len(histories), CHUNK):
        recs = bundle.recommend_many(histories[start : start + CHUNK], k, exclude_seen, state=state)
        for user, rec in zip(users[start : start + CHUNK], recs, strict=True):
            parts.append(
                pd.DataFrame(
                    {
                        "user_id": user,
                        "rank": np.arange(1, len(rec.items) + 1),
                        "item_id": rec.items,
                        "score": rec.scores,
                        "title": state.columns["title"][rec.internal],
                        "tail": state.columns["tail"][rec.internal],
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def write_frame(frame: pd.DataFrame, out: Path) -> None:
    if out.suffix.lower() == ".parquet":
        atomic_write_parquet(out, frame)
    else:
        atomic_write_text(out, frame.to_csv(index=False))


def recommend_from_bundle(
    bundle_dir: Path, history: list[str] | None, histories_file: Path | None, k: int, exclude_seen: bool
) -> pd.DataFrame:
    """Top-k lists of a bundle for one ``history`` (user ``-``) or every user of ``histories_file``."""
    if bool(history) == bool(histories_file):
        raise ConfigError("give exactly one of --history ITEM... or --input FILE with a bundle")
    bundle = Bundle(bundle_dir)
    if history:
        users, histories = ["-"], [list(history)]
    else:
        users, histories = read_histories(histories_file)
    try:
        return recommend_frame(bundle, users, histories, k, exclude_seen)
    except KeyError as err:  # an unknown item id (Bundle.internal_ids)
        raise ConfigError(f"{histories_file or '--history'}: {err.args[0]}") from None
    except ValueError as err:
        raise ConfigError(str(err)) from None
