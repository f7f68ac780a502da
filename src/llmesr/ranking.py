"""Ranks of held-out targets, and each user's top-k, against the whole catalogue, computed one
column block at a time.

For a model whose scores are one product (``users @ table.T + bias``, its ``score_factors``),
full ranking never builds a batch's users x catalogue score matrix: each block of item columns is
scored, masked and counted while it is still in cache, then dropped. With half a million items a
batch's matrix is gigabytes that would be written once and read twice more (mask, compare, sum);
blocks of a few megabytes turn that memory traffic into cache traffic and bound memory per batch.

The rules are those of :func:`llmesr.evaluation.pessimistic_rank` on the full matrix: -inf for
padding and excluded history items, ties and NaN counted against the target. The target's score
comes from a (batch x batch) product of the users with their targets' rows and is also written into
the target's own column, so the target counts itself exactly once whatever the kernel. The ranks
are bitwise those of the full matrix whenever the matrix library computes each entry from its row
and column alone: always for a catalogue that fits one block, and in the tests with exact
(integer-valued) factors for any blocking. Otherwise a product entry may differ in its last bit
between shapes, which moves a rank only where two scores tie to within that bit.
"""

from __future__ import annotations

import torch

# Floats per block of scores: 2^21 x 4 bytes = 8 MiB, about one core's share of a server L2/L3.
_BLOCK_FLOATS = 1 << 21


def block_columns(batch_rows: int, n_columns: int) -> int:
    """Columns per block for ``batch_rows`` users: about :data:`_BLOCK_FLOATS` scores (at least 256
    columns), evened out so that the last block is not a sliver: every product has a similar shape."""
    widest = max(256, _BLOCK_FLOATS // max(batch_rows, 1))
    blocks = -(-n_columns // widest)
    return -(-n_columns // blocks)


def _count_below(scores: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Per row, how many scores are strictly below the row's threshold (NaN never is), as int64.
    ``scores`` is overwritten.

    The comparison is written in place into the float scores (1.0 or 0.0) and summed as floats:
    one pass to compare and one to sum, several times faster on CPU than a boolean tensor and its
    count, and exact (integers below 2^24)."""
    return scores.lt_(threshold).sum(dim=1).to(torch.int64)


def target_scores(
    users: torch.Tensor, table: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor
) -> torch.Tensor:
    """Each user's score of its own target, computed as a product entry like the blocks' entries."""
    scores = (users @ table[targets].T).diagonal().clone()
    if bias is not None:
        scores = scores + bias[targets]
    return scores


def rank_in_blocks(
    users: torch.Tensor,
    table: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    excluded: tuple[torch.Tensor, torch.Tensor] | None = None,
    negatives: torch.Tensor | None = None,
    columns: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pessimistic 0-based ranks of ``targets`` among all ``len(table)`` columns (column 0, padding,
    scores -inf) and, with ``negatives`` (B, n), among the target and its negatives.

    ``excluded``: ``(rows, items)`` pairs scored -inf (a user's history), the target included when
    it is one of them, exactly as masking the full matrix before reading the target's score would.
    """
    n_cols = len(table)
    t = target_scores(users, table, bias, targets)
    if excluded is not None and len(excluded[0]):
        rows, items = excluded[0].long(), excluded[1].long()
        hit = rows[items == targets[rows]]
        t[hit] = float("-inf")
        order = torch.argsort(items)
        rows, items = rows[order], items[order]
    else:
        rows = items = None
    threshold = t.unsqueeze(1)
    ahead = torch.zeros(len(users), dtype=torch.int64, device=users.device)
    neg_scores = None if negatives is None else torch.empty(negatives.shape, dtype=t.dtype, device=t.device)
    width = columns or block_columns(len(users), n_cols)
    for start in range(0, n_cols, width):
        stop = min(start + width, n_cols)
        scores = _masked_block(users, table, bias, start, stop, None if rows is None else (rows, items))
        # The target's own entry is the target's score, so it always counts once (see above).
        own = ((targets >= start) & (targets < stop)).nonzero(as_tuple=True)[0]
        scores[own, targets[own] - start] = t[own]
        if negatives is not None:  # read before the count overwrites the block
            inside = (negatives >= start) & (negatives < stop)
            r, c = inside.nonzero(as_tuple=True)
            neg_scores[r, c] = scores[r, negatives[r, c] - start]
        ahead += (stop - start) - _count_below(scores, threshold)
    full = ahead - 1  # the target's own column is always counted (t is never < t, NaN included)
    sampled = None if negatives is None else negatives.shape[1] - _count_below(neg_scores, threshold)
    return full, sampled


def _masked_block(
    users: torch.Tensor,
    table: torch.Tensor,
    bias: torch.Tensor | None,
    start: int,
    stop: int,
    excluded: tuple[torch.Tensor, torch.Tensor] | None,
) -> torch.Tensor:
    """Scores of columns ``start:stop``, padding (column 0) and ``excluded`` pairs at -inf;
    ``excluded`` items must be sorted."""
    scores = users @ table[start:stop].T
    if bias is not None:
        scores = scores + bias[start:stop]
    if start == 0:
        scores[:, 0] = float("-inf")
    if excluded is not None:
        rows, items = excluded
        lo, hi = torch.searchsorted(items, torch.tensor([start, stop], device=items.device)).tolist()
        scores[rows[lo:hi], items[lo:hi] - start] = float("-inf")
    return scores


def top_in_blocks(
    users: torch.Tensor,
    table: torch.Tensor,
    bias: torch.Tensor | None,
    k: int,
    excluded: tuple[torch.Tensor, torch.Tensor] | None = None,
    columns: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, columns)`` (B, k): each user's ``k`` best columns of ``users @ table.T + bias``,
    best first, with column 0 (padding) and the ``excluded`` ``(rows, items)`` pairs scored -inf.

    Each block keeps its own top k, merged into the running top k, so memory is one block plus
    (B, 2k) whatever the catalogue size. The values are those of a top-k over the whole row; among
    equal scores which column is returned is unspecified, as for ``torch.topk``."""
    n_cols = len(table)
    k = min(k, n_cols)
    if excluded is not None and len(excluded[0]):
        order = torch.argsort(excluded[1])
        excluded = (excluded[0].long()[order], excluded[1].long()[order])
    else:
        excluded = None
    best_values = torch.full((len(users), 0), float("-inf"), dtype=users.dtype, device=users.device)
    best_columns = torch.zeros((len(users), 0), dtype=torch.int64, device=users.device)
    width = columns or block_columns(len(users), n_cols)
    for start in range(0, n_cols, width):
        stop = min(start + width, n_cols)
        block = _masked_block(users, table, bias, start, stop, excluded)
        top = torch.topk(block, min(k, stop - start), dim=1)
        values = torch.cat([best_values, top.values], dim=1)
        cols = torch.cat([best_columns, top.indices + start], dim=1)
        keep = torch.topk(values, min(k, values.shape[1]), dim=1)
        best_values, best_columns = keep.values, cols.gather(1, keep.indices)
    return best_values, best_columns
