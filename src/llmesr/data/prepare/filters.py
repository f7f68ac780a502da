"""Which interactions a prepared dataset keeps: per-line filters (minimum rating, date range),
removal of repeated (user, item) pairs, and user/item core steps, under named presets.

Presets say what published splits did, so that "why do my counts differ" has an answer in code:

- ``s3rec``: the S3Rec/P5 rule (S3Rec's ``data_process.py``): no rating filter, repeated pairs
  kept, users and items with fewer than 5 interactions removed, repeated until nothing changes.
- ``s3rec_yelp``: ``s3rec`` plus S3Rec's Yelp window, reviews dated from 2019-01-01 00:00:00 to
  2019-12-31 00:00:00 inclusive (S3Rec compared the date text, so the last day is cut at midnight).
- ``llmesr``: the LLM-ESR authors' rule as reported in their issues: one pass keeping users with
  at least 3 and items with at least 3 interactions, then one pass keeping users with at least 3.
- ``none``: every review line.

All masks here work on integer codes in file order, so the order of the rows is never changed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from llmesr.data.parsing import DataFormatError


@dataclass(frozen=True)
class CoreStep:
    """Keep interactions whose user has ``>= user_min`` and whose item has ``>= item_min`` of them
    (0 = no condition); once, or repeated until stable (``iterate``: the k-core)."""

    user_min: int
    item_min: int
    iterate: bool

    def describe(self) -> str:
        parts = [f"{who} >= {k}" for who, k in (("users", self.user_min), ("items", self.item_min)) if k > 0]
        how = "iterated until stable" if self.iterate else "one pass"
        return f"{' and '.join(parts) or 'no condition'} ({how})"


@dataclass(frozen=True)
class Filters:
    min_rating: float | None = None  # keep ratings >= this
    date_from: str | None = None  # keep reviews at or after this instant (UTC), "YYYY-MM-DD[ HH:MM:SS]"
    date_to: str | None = None  # keep reviews at or before this instant
    dedup: bool = False  # keep only the first (by time, then file order) of repeated (user, item) pairs
    cores: tuple[CoreStep, ...] = field(default=())

    def time_bounds(self) -> tuple[float, float]:
        """(from, to) in seconds since the epoch; open ends are infinite."""
        low = parse_instant(self.date_from, "date_from") if self.date_from else -math.inf
        high = parse_instant(self.date_to, "date_to") if self.date_to else math.inf
        return low, high

    def has_line_filters(self) -> bool:
        return self.min_rating is not None or self.date_from is not None or self.date_to is not None

    def describe(self) -> list[str]:
        lines = []
        if self.min_rating is not None:
            lines.append(f"rating >= {self.min_rating:g}")
        if self.date_from or self.date_to:
            lines.append(f"date in [{self.date_from or '-inf'}, {self.date_to or '+inf'}] (UTC, inclusive)")
        lines.append(
            "repeated (user, item) pairs: first by time kept"
            if self.dedup
            else "repeated (user, item) pairs kept"
        )
        lines += [f"core: {step.describe()}" for step in self.cores]
        return lines


PRESETS: dict[str, Filters] = {
    "none": Filters(),
    "s3rec": Filters(cores=(CoreStep(5, 5, iterate=True),)),
    "s3rec_yelp": Filters(
        date_from="2019-01-01 00:00:00", date_to="2019-12-31 00:00:00", cores=(CoreStep(5, 5, iterate=True),)
    ),
    "llmesr": Filters(cores=(CoreStep(3, 3, iterate=False), CoreStep(3, 0, iterate=False))),
}


def parse_instant(text: str, what: str) -> float:
    """Seconds since the epoch of ``"YYYY-MM-DD"`` (its midnight) or ``"YYYY-MM-DD HH:MM:SS"``, as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DataFormatError(
            f"{what} {text!r} is not a date: use YYYY-MM-DD or 'YYYY-MM-DD HH:MM:SS'"
        ) from None
    return moment.replace(tzinfo=timezone.utc).timestamp()


def resolve_filters(
    preset: str,
    *,
    min_rating: float | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    dedup: bool | None = None,
    kcore: int | None = None,
) -> Filters:
    """A preset with explicit options laid over it; ``kcore`` replaces the preset's core steps by
    one iterated ``kcore``-core (0: no core filter). Bad values fail here, before any file is read."""
    if preset not in PRESETS:
        raise DataFormatError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    filters = PRESETS[preset]
    if min_rating is not None:
        if not math.isfinite(min_rating):
            raise DataFormatError(f"min_rating must be a finite number, got {min_rating}")
        filters = replace(filters, min_rating=float(min_rating))
    if date_from is not None:
        filters = replace(filters, date_from=date_from)
    if date_to is not None:
        filters = replace(filters, date_to=date_to)
    if dedup is not None:
        filters = replace(filters, dedup=dedup)
    if kcore is not None:
        if kcore < 0:
            raise DataFormatError(f"kcore must be >= 0, got {kcore}")
        filters = replace(filters, cores=(CoreStep(kcore, kcore, iterate=True),) if kcore > 1 else ())
    low, high = filters.time_bounds()
    if low > high:
        raise DataFormatError(f"date_from {filters.date_from!r} is after date_to {filters.date_to!r}")
    return filters


def first_of_repeated_pairs(users: np.ndarray, items: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Mask keeping, of each repeated (user, item) pair, the earliest row (equal times: file order)."""
    order = np.lexsort((times, users))  # stable: equal (user, time) rows keep file order
    pairs = users[order].astype(np.int64) * (int(items.max(initial=0)) + 1) + items[order]
    keep = np.empty(len(users), dtype=bool)
    keep[order] = ~pd.Series(pairs).duplicated().to_numpy()
    return keep


def core_mask(users: np.ndarray, items: np.ndarray, step: CoreStep) -> np.ndarray:
    """Rows kept by one :class:`CoreStep`; counts are over rows, so repeated pairs count each time."""
    keep = np.ones(len(users), dtype=bool)
    while True:
        user_counts = np.bincount(users[keep], minlength=int(users.max(initial=-1)) + 1)
        item_counts = np.bincount(items[keep], minlength=int(items.max(initial=-1)) + 1)
        new_keep = keep & (user_counts[users] >= step.user_min) & (item_counts[items] >= step.item_min)
        changed = int(new_keep.sum()) != int(keep.sum())
        keep = new_keep
        if not (step.iterate and changed):
            return keep
