"""A bundle's catalogue as one immutable snapshot: what a request reads and what cold start replaces.

The item list, its per-request lookups (id -> internal id, columns, the popularity order of the
title search), the fused item table and the cold-start set change together when ``POST /items``
adds an item. Kept as separate attributes, a reader could see a new item list with old titles
(the audit: ``Item wrong length 1689 instead of 1690`` in a search during an addition). So they
live in one frozen :class:`Catalogue`; an addition builds the next one and publishes it with a
single assignment, and a request takes the current one once and reads only from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from llmesr.serving.cold_start import ColdItems

COLUMNS = ("title", "popularity", "tail", "cold_start")


def quoted(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: error messages name client input, never echo megabytes."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, eq=False)
class Catalogue:
    """Items 0..N (row 0 = padding) with their table rows; never modified once built (the frame,
    arrays and tensor are not written to), so any number of threads may read one."""

    items: pd.DataFrame  # item_id, title, popularity, tail, cold_start per internal id
    table: torch.Tensor  # (N + 1, width): the fused item table with its bias column
    cold: ColdItems  # items added at serving time, with their neighbours' spread
    item_ids: np.ndarray  # (N + 1,) original ids as str
    internal: dict[str, int]  # original id -> internal id
    columns: dict[str, np.ndarray]  # COLUMNS as plain arrays: per-request lookups in microseconds
    by_popularity: np.ndarray  # internal ids 1..N, most popular first (ties: lower id first)
    search_titles: pd.Series  # lower-case titles in ``by_popularity`` order

    @classmethod
    def build(cls, items: pd.DataFrame, table: torch.Tensor, cold: ColdItems) -> Catalogue:
        if len(items) != len(table):
            raise ValueError(f"{len(items)} items but {len(table)} table rows")
        item_ids = items["item_id"].astype(str).to_numpy()
        order = np.argsort(-items["popularity"].to_numpy()[1:], kind="stable") + 1
        titles = items["title"].astype(str).str.lower().to_numpy()[order]
        return cls(
            items=items,
            table=table,
            cold=cold,
            item_ids=item_ids,
            internal={item: i for i, item in enumerate(item_ids[1:].tolist(), start=1)},
            columns={c: items[c].to_numpy() for c in COLUMNS},
            by_popularity=order,
            search_titles=pd.Series(titles, dtype=object),
        )

    def with_item(self, item: dict, row: torch.Tensor, cold: ColdItems) -> Catalogue:
        """The next snapshot: this one plus ``item`` (a row of ``items``) with table row ``row``."""
        items = pd.concat([self.items, pd.DataFrame([item])], ignore_index=True)
        return Catalogue.build(items, torch.cat([self.table, row]), cold)

    @property
    def n_items(self) -> int:
        """Items that can be recommended (cold-start additions included)."""
        return len(self.item_ids) - 1

    def internal_ids(self, original: list[str]) -> np.ndarray:
        """Internal ids of original item ids; ``KeyError`` naming (the first ten) unknown ids."""
        ids = [self.internal.get(str(i), 0) for i in original]
        if 0 in ids:
            unknown = [str(o) for o, i in zip(original, ids, strict=True) if i == 0]
            raise KeyError(f"unknown item id(s): {', '.join(map(quoted, unknown[:10]))}")
        return np.asarray(ids, dtype=np.int64)

    def item_info(self, internal: int) -> dict:
        c = self.columns
        return {
            "item_id": str(self.item_ids[internal]),
            "title": str(c["title"][internal]),
            "popularity": int(c["popularity"][internal]),
            "tail": bool(c["tail"][internal]),
            "cold_start": bool(c["cold_start"][internal]),
        }

    def search(self, query: str, limit: int = 20) -> list[int]:
        """Internal ids of items whose title contains ``query`` (case-insensitive), most popular
        first; the most popular items for an empty query."""
        if not query:
            return self.by_popularity[:limit].tolist()
        match = self.search_titles.str.contains(query.lower(), regex=False).to_numpy(dtype=bool)
        return self.by_popularity[match][:limit].tolist()
