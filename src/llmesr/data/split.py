"""Train / validation / test splits for next-item prediction.

``leave_one_out`` is the paper's protocol. ``global_time`` cuts the whole log at two points in
time so that no training interaction happens after an evaluated one (Sun et al., 2023 argue this is
the more realistic protocol).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmesr.data.dataset import SequenceDataset
from llmesr.data.formats import DataFormatError
from llmesr.data.sequences import Sequences, ragged_index


@dataclass(frozen=True)
class EvalSplit:
    """One evaluation set: for ``users[r]``, the model sees ``inputs.row(r)`` and must rank ``targets[r]``."""

    users: np.ndarray
    inputs: Sequences
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class Split:
    protocol: str
    train: Sequences  # training part of every user's history (row u = user u; may be empty)
    valid: EvalSplit
    test: EvalSplit

    def eval_split(self, name: str) -> EvalSplit:
        if name not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', got {name!r}")
        return self.valid if name == "valid" else self.test


def leave_one_out(data: SequenceDataset) -> Split:
    """Last item is the test target, second-last the validation target, the rest is training.

    Users with fewer than 3 interactions are used for training only: they have nothing left to
    train on after holding two items out.
    """
    seqs = data.sequences
    lengths = seqs.lengths
    evaluated = np.flatnonzero(lengths >= 3)
    train_lengths = np.where(lengths >= 3, lengths - 2, lengths)
    train = _prefixes(seqs, np.arange(len(seqs)), train_lengths)
    ends = seqs.offsets[1:]
    valid = EvalSplit(
        users=evaluated,
        inputs=_prefixes(seqs, evaluated, lengths[evaluated] - 2),
        targets=seqs.items[ends[evaluated] - 2],
    )
    test = EvalSplit(
        users=evaluated,
        inputs=_prefixes(seqs, evaluated, lengths[evaluated] - 1),
        targets=seqs.items[ends[evaluated] - 1],
    )
    return Split("leave_one_out", train, valid, test)


def global_time(data: SequenceDataset, valid_fraction: float = 0.1, test_fraction: float = 0.1) -> Split:
    """Cut the log at the time quantiles ``1 - valid - test`` and ``1 - test`` of all interactions.

    Training uses the interactions before the first cut. A user's validation target is their first
    interaction between the cuts, given everything before it; the test target is their first
    interaction after the second cut, given everything before it. Users with no earlier
    interaction cannot be scored by a sequential model and are left out of that evaluation set.
    """
    if data.timestamps is None:
        raise DataFormatError(f"dataset {data.name!r} has no timestamps: the global_time split needs them")
    if not (0 < valid_fraction and 0 < test_fraction and valid_fraction + test_fraction < 1):
        raise ValueError("valid_fraction and test_fraction must be positive and sum to less than 1")
    ts = data.timestamps
    t_valid, t_test = np.quantile(ts, [1 - valid_fraction - test_fraction, 1 - test_fraction])
    seqs = data.sequences
    user_of = np.repeat(np.arange(len(seqs)), seqs.lengths)
    n_before_valid = np.bincount(user_of[ts < t_valid], minlength=len(seqs))
    n_before_test = np.bincount(user_of[ts < t_test], minlength=len(seqs))
    train = _prefixes(seqs, np.arange(len(seqs)), n_before_valid)

    def eval_at(n_before: np.ndarray, has_target: np.ndarray) -> EvalSplit:
        users = np.flatnonzero(has_target & (n_before > 0))
        return EvalSplit(
            users, _prefixes(seqs, users, n_before[users]), seqs.items[seqs.offsets[users] + n_before[users]]
        )

    valid = eval_at(n_before_valid, n_before_test > n_before_valid)
    test = eval_at(n_before_test, seqs.lengths > n_before_test)
    return Split("global_time", train, valid, test)


def make_split(data: SequenceDataset, protocol: str) -> Split:
    if protocol == "leave_one_out":
        return leave_one_out(data)
    if protocol == "global_time":
        return global_time(data)
    raise ValueError(f"unknown split {protocol!r}: use 'leave_one_out' or 'global_time'")


def _prefixes(seqs: Sequences, rows: np.ndarray, lengths: np.ndarray) -> Sequences:
    """The first ``lengths[r]`` items of each of ``rows``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    idx = ragged_index(seqs.offsets[rows], lengths)
    return Sequences.from_lengths(seqs.items[idx], lengths)
