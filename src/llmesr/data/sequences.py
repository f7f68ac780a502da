"""Ragged integer sequences stored as CSR arrays, and vectorised left-padding.

Every per-user list in llmesr (full histories, training prefixes, evaluation inputs) is a
:class:`Sequences`: one flat ``items`` array plus ``offsets``. Padding a batch is pure index
arithmetic, so no Python loop ever touches a single sequence on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Sequences:
    """``items[offsets[i]:offsets[i+1]]`` is row ``i``. Item ids are ints >= 1 (0 is padding)."""

    offsets: np.ndarray  # int64, shape (n_rows + 1,)
    items: np.ndarray  # int64, shape (offsets[-1],)

    @classmethod
    def from_lengths(cls, items: np.ndarray, lengths: np.ndarray) -> Sequences:
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(offsets, np.asarray(items, dtype=np.int64))

    @classmethod
    def from_lists(cls, rows: list[list[int]]) -> Sequences:
        """Convenience constructor for tests and small inputs."""
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        flat = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(lengths.sum()))
        return cls.from_lengths(flat, lengths)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, i: int) -> np.ndarray:
        return self.items[self.offsets[i] : self.offsets[i + 1]]

    def tolist(self) -> list[list[int]]:
        return [self.row(i).tolist() for i in range(len(self))]

    def take(self, rows: np.ndarray) -> Sequences:
        """A new Sequences holding ``rows`` in the given order."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        idx = ragged_index(self.offsets[rows], lengths)
        return Sequences.from_lengths(self.items[idx], lengths)

    def drop_last(self, n: int) -> Sequences:
        """Every row without its last ``n`` items (rows shorter than that become empty)."""
        lengths = np.maximum(self.lengths - n, 0)
        idx = ragged_index(self.offsets[:-1], lengths)
        return Sequences.from_lengths(self.items[idx], lengths)

    def last(self, n: int = 1) -> np.ndarray:
        """The item ``n`` places from the end of each row (rows must be long enough)."""
        return self.items[self.offsets[1:] - n]

    def pad_left(self, rows: np.ndarray, max_len: int, *, extra: int = 0) -> torch.Tensor:
        """Left-padded ``(len(rows), L)`` LongTensor of the last ``max_len`` items of each row.

        ``L`` is the longest kept row *in this batch* (not ``max_len``): most histories are short,
        so padding to the batch maximum saves most of the work. ``extra`` appends that many zero
        columns on the right (BERT4Rec's mask slot).
        """
        rows = np.asarray(rows, dtype=np.int64)
        ends = self.offsets[rows + 1]
        lengths = np.minimum(ends - self.offsets[rows], max_len)
        width = max(int(lengths.max(initial=0)), 1)
        if self.items.size == 0:  # nothing to gather from (e.g. an all-empty training split)
            return torch.zeros((len(rows), width + extra), dtype=torch.long)
        cols = np.arange(width)
        pad = width - lengths  # leading zeros per row
        src = ends[:, None] - width + cols[None, :]
        valid = cols[None, :] >= pad[:, None]
        out = np.where(valid, self.items[np.where(valid, src, 0)], 0)
        if extra:
            out = np.concatenate([out, np.zeros((len(rows), extra), dtype=np.int64)], axis=1)
        return torch.from_numpy(out)


def ragged_index(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat indices ``[s0, s0+1, .., s0+l0-1, s1, ...]`` without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    row_starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + (np.arange(total) - row_starts)
