"""Stage counts and the final renumbering of kept interactions into a sequences folder's ids.

The id rule is S3Rec's (``data_process.py``: a dict filled in file order, then ``id_map``), which
gives the shared Beauty and Yelp id spaces (items there are numbered by first appearance, and the
Beauty users are in order of their smallest asin: the 2014 review files are sorted by asin).
Users are numbered from 1 in order of their first review line in the file (among lines passing
the rating and date filters, before any core step); items from 1 in order of first appearance
when the users' histories are read in that order. Each history is in time order; equal times keep
file order (a stable sort, as S3Rec's ``list.sort``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from llmesr.data.sequences import Sequences

ID_RULE = (
    "users numbered from 1 in order of their first review line in the file (among lines passing "
    "the rating/date filters); items numbered from 1 in order of first appearance reading the "
    "users in that order, each history in time order (S3Rec's id_map)"
)
TIE_RULE = "each history sorted by time; equal timestamps keep file order (a stable sort, like S3Rec)"


@dataclass(frozen=True)
class StageCount:
    stage: str
    users: int
    items: int
    interactions: int
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def count_stage(stage: str, users: np.ndarray, items: np.ndarray, note: str = "") -> StageCount:
    return StageCount(stage, int(np.unique(users).size), int(np.unique(items).size), len(users), note)


@dataclass(frozen=True)
class Numbered:
    sequences: Sequences  # row k = user k + 1; item ids from 1
    user_codes: np.ndarray  # user_codes[k]: input code of output user k + 1
    item_codes: np.ndarray  # item_codes[k]: input code of output item k + 1


def number_ids(users: np.ndarray, items: np.ndarray, times: np.ndarray, keep: np.ndarray) -> Numbered:
    """Renumber the rows ``keep`` of file-ordered ``users``/``items``/``times`` by :data:`ID_RULE`."""
    first_seen = pd.unique(users)  # every user code passing the line filters, by first line
    rank = np.zeros(int(users.max(initial=0)) + 1, dtype=np.int64)
    rank[first_seen] = np.arange(len(first_seen))
    kept_users, kept_items, kept_times = users[keep], items[keep], times[keep]
    order = np.lexsort((kept_times, rank[kept_users]))  # stable: ties keep file order
    user_numbers, user_codes = pd.factorize(kept_users[order])
    item_numbers, item_codes = pd.factorize(kept_items[order])
    lengths = np.bincount(user_numbers, minlength=len(user_codes))
    return Numbered(
        Sequences.from_lengths(item_numbers.astype(np.int64) + 1, lengths),
        np.asarray(user_codes),
        np.asarray(item_codes),
    )
