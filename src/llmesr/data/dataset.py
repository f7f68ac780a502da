"""A dataset in contiguous integer ids: users ``0..U-1``, items ``1..N`` (0 is padding).

The maps back to the original ids are kept on the object (``user_ids``, ``item_ids``) and every
output a person reads goes through them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from llmesr.data.formats import DataFormatError, InteractionLog, read_dataset
from llmesr.data.sequences import Sequences


@dataclass
class SequenceDataset:
    name: str
    user_ids: np.ndarray  # original user id (str) of internal user u, shape (U,)
    item_ids: np.ndarray  # original item id (str) of internal item i; item_ids[0] == "" (padding)
    sequences: Sequences  # one time-ordered row per user
    timestamps: np.ndarray | None  # aligned with sequences.items, or None
    item_info: pd.DataFrame | None  # text fields, row i = internal item i (row 0 padding)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of real items; the item table has ``n_items + 1`` rows."""
        return len(self.item_ids) - 1

    @property
    def n_interactions(self) -> int:
        return len(self.sequences.items)

    def fingerprint(self) -> str:
        """Hash of the id maps and interactions: a checkpoint records it and refuses another dataset."""
        h = hashlib.sha256()
        for arr in (self.user_ids, self.item_ids):
            h.update("\x1f".join(arr.tolist()).encode())
            h.update(b"\x1e")
        h.update(self.sequences.offsets.tobytes())
        h.update(self.sequences.items.tobytes())
        return h.hexdigest()[:16]

    def item_index(self, original_ids: list[str] | np.ndarray) -> np.ndarray:
        """Internal ids for original item ids; raises naming the first unknown id."""
        lookup = pd.Index(self.item_ids[1:])
        idx = lookup.get_indexer(pd.Index(np.asarray(original_ids, dtype=object)))
        if (idx < 0).any():
            bad = np.asarray(original_ids, dtype=object)[idx < 0][0]
            raise KeyError(f"unknown item id {bad!r} (not in dataset {self.name!r})")
        return idx + 1

    def describe(self) -> dict:
        lengths = self.sequences.lengths
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "median_history": float(np.median(lengths)) if len(lengths) else 0.0,
            "density": self.n_interactions / max(self.n_users * self.n_items, 1),
        }


def kcore_filter(log: InteractionLog, k: int) -> InteractionLog:
    """Keep interactions whose user and item both have at least ``k`` of them, iterated to a fixpoint."""
    if k <= 1:
        return log
    keep = np.ones(len(log.users), dtype=bool)
    u_codes = pd.factorize(log.users)[0]
    i_codes = pd.factorize(log.items)[0]
    while True:
        u_counts = np.bincount(u_codes[keep], minlength=u_codes.max() + 1)
        i_counts = np.bincount(i_codes[keep], minlength=i_codes.max() + 1)
        new_keep = keep & (u_counts[u_codes] >= k) & (i_counts[i_codes] >= k)
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    ts = log.timestamps[keep] if log.timestamps is not None else None
    return InteractionLog(log.users[keep], log.items[keep], ts, log.item_info, log.source)


def build_dataset(log: InteractionLog, name: str, *, kcore: int = 0) -> SequenceDataset:
    """Remap a log to contiguous ids. Users keep their first-appearance order, items are numbered
    in order of first appearance, so the same file always gives the same ids."""
    log = kcore_filter(log, kcore)
    if len(log.users) == 0:
        raise DataFormatError(f"{log.source}: no interactions left (after {kcore}-core filtering)")
    u_codes, user_ids = pd.factorize(log.users)
    i_codes, item_ids = pd.factorize(log.items)
    # Stable sort by user keeps each user's time order (readers deliver rows time-ordered per user).
    order = np.argsort(u_codes, kind="stable")
    lengths = np.bincount(u_codes, minlength=len(user_ids))
    seqs = Sequences.from_lengths(i_codes[order].astype(np.int64) + 1, lengths)
    ts = log.timestamps[order] if log.timestamps is not None else None
    all_item_ids = np.concatenate([np.array([""], dtype=object), np.asarray(item_ids, dtype=object)])
    info = None
    if log.item_info is not None:
        info = log.item_info.copy()
        info.index = info.index.astype(str)
        info = info[~info.index.duplicated()].reindex(all_item_ids)
        info.index = pd.RangeIndex(len(all_item_ids))
    return SequenceDataset(
        name=name,
        user_ids=np.asarray(user_ids, dtype=object),
        item_ids=all_item_ids,
        sequences=seqs,
        timestamps=ts,
        item_info=info,
    )


def load_dataset(
    path: str | Path, *, kcore: int = 0, format: str = "auto", **table_kwargs
) -> SequenceDataset:
    """Read any supported format (see :func:`llmesr.data.formats.read_dataset`) and remap ids."""
    path = Path(path)
    log = read_dataset(path, format=format, **table_kwargs)
    name = path.stem if path.is_file() else path.name
    return build_dataset(log, name, kcore=kcore)


def resolve_data_path(name_or_path: str) -> Path:
    """A dataset path as given, or a dataset *name* looked up in ``$LLMESR_DATA_DIR``,
    ``./data``, ``../shared/data`` and the ``shared/data`` folder beside this checkout."""
    import os

    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    roots = [Path(p) for p in os.environ.get("LLMESR_DATA_DIR", "").split(os.pathsep) if p]
    roots += [
        Path("data"),
        Path("..") / "shared" / "data",
        Path(__file__).resolve().parents[4] / "shared" / "data",
    ]
    for root in roots:
        if (root / name_or_path).exists():
            return root / name_or_path
    raise DataFormatError(
        f"dataset {name_or_path!r} not found: not a path, and not under {', '.join(str(r) for r in roots)}"
    )
