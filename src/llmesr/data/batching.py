"""Epoch batch order for training: shuffled, optionally bucketed by length to cut padding."""

from __future__ import annotations

import numpy as np


def epoch_batches(
    rows: np.ndarray,
    lengths: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    *,
    bucket: bool = True,
    bucket_batches: int = 50,
) -> list[np.ndarray]:
    """Split ``rows`` (training examples) into batches for one epoch.

    With ``bucket``, rows are shuffled, then sorted by length inside windows of ``bucket_batches``
    batches, cut into batches and the batches shuffled again. Batches then hold similar lengths, so
    per-batch padding is small, while every epoch still sees a different random grouping.
    """
    perm = rng.permutation(rows)
    if bucket:
        window = batch_size * bucket_batches
        for start in range(0, len(perm), window):
            chunk = perm[start : start + window]
            perm[start : start + window] = chunk[np.argsort(lengths[chunk], kind="stable")]
    batches = [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]
    if bucket:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches
