"""Stream a review file into integer arrays: the only pass over the (large) review dump.

Memory is bounded by what is kept, not by the file: each kept interaction costs 16 bytes (two
int32 codes and a float64 time) and each distinct user and item id one dict entry (the id text plus
about 100 bytes); a review's text is dropped as soon as its line is parsed. Lines that fail the
rating or date filter are counted and dropped at once.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmesr.data.parsing import DataFormatError
from llmesr.data.prepare.filters import Filters
from llmesr.data.prepare.rawfile import records
from llmesr.data.prepare.source import Source
from llmesr.progress import Progress


@dataclass
class RawInteractions:
    """Interactions passing the per-line filters, one row per review line, in file order."""

    users: np.ndarray  # int32 code of the user; codes number every user of the file in order of first line
    items: np.ndarray  # int32 code of the item, likewise
    times: np.ndarray  # float64 seconds since the epoch
    user_ids: list[str]  # original id of each user code
    item_ids: list[str]  # original id of each item code
    lines: int  # review lines read
    dropped_by_rating: int
    dropped_by_date: int


def _intern(index: dict[str, int], key: str) -> int:
    code = index.get(key)
    if code is None:
        code = index[key] = len(index)
    return code


def read_reviews(source: Source, path: Path, filters: Filters, progress: Progress) -> RawInteractions:
    """Every review line of ``path`` parsed by ``source``; a bad line fails naming file and line."""
    low, high = filters.time_bounds()
    min_rating = filters.min_rating if filters.min_rating is not None else -np.inf
    user_index: dict[str, int] = {}
    item_index: dict[str, int] = {}
    users, items, times = array("i"), array("i"), array("d")
    lines = by_rating = by_date = 0
    for number, obj in progress.over(records(path, source.decode_review), f"read {path.name}"):
        try:
            user, item, rating, seconds = source.review(obj)
        except ValueError as exc:
            raise DataFormatError(f"{path}:{number}: {exc}") from None
        lines += 1
        u, i = _intern(user_index, user), _intern(item_index, item)
        if rating < min_rating:
            by_rating += 1
        elif not low <= seconds <= high:
            by_date += 1
        else:
            users.append(u)
            items.append(i)
            times.append(seconds)
    if lines == 0:
        raise DataFormatError(f"{path}: no review lines")
    return RawInteractions(
        users=np.frombuffer(users, dtype=np.int32),
        items=np.frombuffer(items, dtype=np.int32),
        times=np.frombuffer(times, dtype=np.float64),
        user_ids=list(user_index),
        item_ids=list(item_index),
        lines=lines,
        dropped_by_rating=by_rating,
        dropped_by_date=by_date,
    )
