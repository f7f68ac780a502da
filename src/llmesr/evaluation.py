"""Ranking evaluation: full ranking (default) or sampled ranking with fixed negatives.

Rules that make the numbers trustworthy:
- ties are broken *against* the target (pessimistic rank), so a constant model scores zero;
- the padding item is never ranked;
- items already in the user's evaluation input are excluded by default (``exclude_history``);
- sampled negatives are drawn once, from items the user never touched, with a seeded generator;
- every metric is also reported per tail/head user and tail/head item group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from llmesr.data.groups import HeadTailGroups, named_groups
from llmesr.data.negatives import sample_negatives
from llmesr.data.sequences import Sequences, ragged_index
from llmesr.data.split import EvalSplit
from llmesr.parallel import DistContext
from llmesr.ranking import rank_in_blocks, top_in_blocks

PROTOCOLS = ("full", "sampled")
EVAL_SPLITS = ("valid", "test")
GROUPS = ("overall", "tail_item", "head_item", "tail_user", "head_user")
METRICS = ("HR", "NDCG", "MRR")
DEFAULT_KS = (5, 10, 20)


class Scorer(Protocol):
    """What ranking needs of a model: its input for a batch of histories and the scores of every
    item for it (column 0, padding, is -inf). ``config.n_items`` is the catalogue size."""

    config: Any

    def eval_input(self, history: Sequences, rows: np.ndarray) -> torch.Tensor: ...

    def score_all(self, seq: torch.Tensor) -> torch.Tensor: ...


def metric_names(ks: Sequence[int]) -> list[str]:
    """Every metric computed at cut-offs ``ks`` (``HR@10``, ...)."""
    return [f"{m}@{k}" for k in ks for m in METRICS]


def per_user(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Per-user value of ``HR@k`` / ``NDCG@k`` / ``MRR@k`` from 0-based ranks."""
    name, _, k = metric.partition("@")
    r = np.asarray(ranks, dtype=np.float64)
    hit = r < int(k)
    if name == "HR":
        return hit.astype(np.float64)
    if name == "NDCG":
        return np.where(hit, 1.0 / np.log2(r + 2.0), 0.0)
    if name == "MRR":
        return np.where(hit, 1.0 / (r + 1.0), 0.0)
    raise ValueError(f"unknown metric {metric!r}: choose one of {', '.join(METRICS)} at some k")


def pessimistic_rank(scores: torch.Tensor, target_scores: torch.Tensor) -> torch.Tensor:
    """0-based rank of each target among ``scores`` (which include the target itself): every item
    scored higher *or equal* counts as ahead of it."""
    # One comparison pass: every item *not strictly below* the target is ahead of it (minus the
    # target itself). Written as ~(<) so that NaN scores count against the target, never for it.
    return (~(scores < target_scores.unsqueeze(1))).sum(1) - 1


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float | None]:
    """HR@K, NDCG@K and MRR@K averaged over users (one held-out item each). ``None`` when empty."""
    if len(ranks) == 0:
        return dict.fromkeys(metric_names(ks))
    return {name: float(per_user(ranks, name).mean()) for name in metric_names(ks)}


def sampled_negatives(
    full_history: Sequences, users: np.ndarray, n: int, n_items: int, seed: int, chunk: int = 4096
) -> torch.Tensor:
    """``(len(users), n)`` items each user never interacted with (in their *whole* sequence),
    uniform with replacement, fixed by ``seed`` so every evaluation pass sees the same ones."""
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for start in range(0, len(users), chunk):
        rows = users[start : start + chunk]
        context = full_history.pad_left(rows, max_len=int(full_history.lengths.max()))
        parts.append(sample_negatives(context, torch.arange(len(rows)), n, n_items, gen, max_rounds=64))
    return torch.cat(parts) if parts else torch.zeros((0, n), dtype=torch.long)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's weights live (CPU for a model without any, or one that is not a Module)."""
    if not isinstance(model, torch.nn.Module):
        return torch.device("cpu")
    first = next(iter(model.parameters()), None)
    if first is None:
        first = next(iter(model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def history_pairs(
    history: Sequences, rows: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(batch_rows, items)``: every item of each row's history, as positions in the batch."""
    lengths = history.lengths[rows]
    items = history.items[ragged_index(history.offsets[rows], lengths)]
    batch_rows = np.repeat(np.arange(len(rows)), lengths)
    return torch.from_numpy(batch_rows).to(device), torch.from_numpy(items).to(device)


def exclude_items(scores: torch.Tensor, history: Sequences, rows: np.ndarray) -> None:
    """Set the score of every item in each row's history to -inf, in place."""
    scores[history_pairs(history, rows, scores.device)] = float("-inf")


def rank_targets(
    model: Scorer,
    split: EvalSplit,
    *,
    negatives: torch.Tensor | None = None,
    exclude_history: bool = True,
    batch_size: int = 1024,
    dist: DistContext | None = None,
) -> dict[str, np.ndarray]:
    """Pessimistic 0-based rank of every user's target: ``{"full": ranks}`` and, when fixed
    ``negatives`` are given, ``"sampled"`` ranks among the target and its negatives too (both
    protocols from one scoring pass).

    Users are visited shortest history first (each batch padded as little as possible). With a
    ``dist`` of several ranks (``torchrun``), each rank ranks its strided share of that order and
    every rank receives all ranks: the same arrays as one process computes."""
    dist = dist or DistContext()
    order = np.argsort(split.inputs.lengths, kind="stable")
    mine = dist.shard(order)
    full = np.empty(len(mine), dtype=np.int64)
    sampled = np.empty(len(mine), dtype=np.int64) if negatives is not None else None
    model.eval()
    device = model_device(model)
    targets = torch.from_numpy(split.targets).to(device)
    negatives = negatives.to(device) if negatives is not None else None
    with torch.inference_mode():
        for start in range(0, len(mine), batch_size):
            pos = mine[start : start + batch_size]
            index = torch.from_numpy(pos).to(device)
            neg = negatives[index] if negatives is not None else None
            batch_full, batch_sampled = _batch_ranks(model, split, pos, targets[index], neg, exclude_history)
            full[start : start + len(pos)] = batch_full.cpu().numpy()
            if sampled is not None:
                sampled[start : start + len(pos)] = batch_sampled.cpu().numpy()
    out = {"full": full} if sampled is None else {"full": full, "sampled": sampled}
    result = {}
    for protocol, local in out.items():
        result[protocol] = np.empty(len(order), dtype=np.int64)
        result[protocol][order] = dist.gather_shards(local, len(order))
    return result


def _batch_ranks(
    model: Scorer,
    split: EvalSplit,
    pos: np.ndarray,
    targets: torch.Tensor,
    negatives: torch.Tensor | None,
    exclude_history: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Full (and sampled) ranks of one batch: in column blocks from the model's score factors when
    its scores are one product, else from its whole score rows."""
    seq = model.eval_input(split.inputs, pos).to(targets.device)
    factors = model.score_factors(seq) if hasattr(model, "score_factors") else None
    if factors is not None:
        excluded = history_pairs(split.inputs, pos, targets.device) if exclude_history else None
        return rank_in_blocks(*factors, targets, excluded=excluded, negatives=negatives)
    scores = model.score_all(seq)
    if exclude_history:
        exclude_items(scores, split.inputs, pos)
    target_scores = scores.gather(1, targets.unsqueeze(1)).squeeze(1)
    full = pessimistic_rank(scores, target_scores)
    if negatives is None:
        return full, None
    # Candidates = target + its fixed negatives (never history items by construction).
    candidates = torch.cat([target_scores.unsqueeze(1), scores.gather(1, negatives)], dim=1)
    return full, pessimistic_rank(candidates, target_scores)


def summarize(
    ranks: np.ndarray, split: EvalSplit, groups: HeadTailGroups | None, ks: Sequence[int]
) -> dict[str, object]:
    """Overall metrics and, with ``groups``, the same per tail/head user and item group."""
    result: dict[str, object] = {"users": int(len(ranks)), "overall": metrics_from_ranks(ranks, ks)}
    if groups is not None:
        members = named_groups(*groups.tails(split.users, split.targets))
        result["groups"] = {
            name: {"count": int(member.sum()), **metrics_from_ranks(ranks[member], ks)}
            for name, member in members.items()
        }
    return result


def evaluate(
    model: Scorer,
    split: EvalSplit,
    *,
    groups: HeadTailGroups | None = None,
    negatives: torch.Tensor | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    exclude_history: bool = True,
    batch_size: int = 1024,
) -> dict[str, dict[str, object]]:
    """Metrics per protocol: ``{"full": {...}, "sampled": {...}}`` (sampled only with ``negatives``)."""
    ranks = rank_targets(
        model, split, negatives=negatives, exclude_history=exclude_history, batch_size=batch_size
    )
    return describe_ranks(ranks, split, groups, negatives, ks, exclude_history)


def describe_ranks(
    ranks: dict[str, np.ndarray],
    split: EvalSplit,
    groups: HeadTailGroups | None,
    negatives: torch.Tensor | None,
    ks: Sequence[int],
    exclude_history: bool,
) -> dict[str, dict[str, object]]:
    """The metrics dict of :func:`evaluate` from ranks already computed by :func:`rank_targets`."""
    out = {}
    for protocol, r in ranks.items():
        detail = {"sampled_negatives": int(negatives.shape[1])} if protocol == "sampled" else {}
        out[protocol] = {
            "protocol": protocol,
            **detail,
            "exclude_history": exclude_history,
            **summarize(r, split, groups, ks),
        }
    return out


@torch.no_grad()
def top_k(
    model: Scorer,
    split: EvalSplit,
    k: int,
    *,
    exclude_history: bool = True,
    batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """``(items, scores)`` of shape (len(split), k): the model's top-k per user, best first.

    Excluded items (-inf) are never returned: their slots hold item 0 and score -inf when a user has
    fewer than ``k`` candidates.
    """
    k = min(k, model.config.n_items)
    items = np.zeros((len(split), k), dtype=np.int64)
    values = np.full((len(split), k), -np.inf, dtype=np.float32)
    model.eval()
    device = model_device(model)
    order = np.argsort(split.inputs.lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        pos = order[start : start + batch_size]
        top_values, top_items = _batch_top(model, split, pos, k, exclude_history, device)
        keep = torch.isfinite(top_values)
        items[pos] = torch.where(keep, top_items, 0).cpu().numpy()
        values[pos] = top_values.float().cpu().numpy()
    return items, values


def _batch_top(
    model: Scorer, split: EvalSplit, pos: np.ndarray, k: int, exclude_history: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch's top ``k`` (values, items): in column blocks from the model's score factors when
    its scores are one product, else from its whole score rows."""
    seq = model.eval_input(split.inputs, pos).to(device)
    factors = model.score_factors(seq) if hasattr(model, "score_factors") else None
    if factors is not None:
        excluded = history_pairs(split.inputs, pos, device) if exclude_history else None
        return top_in_blocks(*factors, k, excluded=excluded)
    scores = model.score_all(seq)
    if exclude_history:
        exclude_items(scores, split.inputs, pos)
    top = torch.topk(scores, k, dim=1)
    return top.values, top.indices


def format_table(metrics: dict, split: str = "test", k: int = 10) -> str:
    """A plain-text table of HR@k / NDCG@k per protocol and head/tail group (empty group: "-")."""
    header = f"{split:<8}{'protocol':<10}" + "".join(f"{c:>22}" for c in GROUPS)
    lines = [
        header,
        f"{'':<18}" + "".join(f"{'HR@' + str(k) + ' / NDCG@' + str(k):>22}" for _ in GROUPS),
    ]
    for protocol, result in metrics[split].items():
        cells = []
        for column in GROUPS:
            values = result["overall"] if column == "overall" else result["groups"][column]
            hr, ndcg = values.get(f"HR@{k}"), values.get(f"NDCG@{k}")
            cells.append("-" if hr is None else f"{hr:.4f} / {ndcg:.4f}")
        lines.append(f"{'':<8}{protocol:<10}" + "".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)
