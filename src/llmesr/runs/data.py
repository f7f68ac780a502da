"""What a run trains and is evaluated on: the dataset, its split, head/tail groups and the fixed
sampled-protocol negatives, prepared from a run config; and the evaluation of a model on it.

Every command that needs a run's data (train, evaluate, recommend, export, report) prepares it
here, so two of them can never split or group the same data differently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from llmesr.allocator import reuse_freed_memory
from llmesr.config import default_of
from llmesr.data.dataset import SequenceDataset, load_dataset, resolve_data_path
from llmesr.data.formats import detect_format
from llmesr.data.groups import HeadTailGroups, groups_from_preset
from llmesr.data.split import Split, make_split
from llmesr.errors import ConfigError
from llmesr.evaluation import EVAL_SPLITS, Scorer, describe_ranks, rank_targets, sampled_negatives, top_k
from llmesr.parallel import DistContext

log = logging.getLogger("llmesr")
TABLE_KEYS = ("user_col", "item_col", "time_col")  # read only from table files (CSV, TSV, Parquet)


@dataclass
class RunData:
    dataset: SequenceDataset
    split: Split
    groups: HeadTailGroups
    negatives: dict[str, torch.Tensor]  # fixed sampled-protocol negatives per evaluation split

    def dataset_info(self) -> dict:
        return {
            **self.dataset.describe(),
            "fingerprint": self.dataset.fingerprint(),
            "split": self.split.protocol,
            "groups": self.groups.describe(),
        }


def prepare_data(cfg: Any) -> RunData:
    """The data of a run config (``RunConfig``); bad data or settings are a one-line error."""
    path = resolve_data_path(cfg.data)
    fmt = detect_format(path) if cfg.data_format == "auto" else cfg.data_format
    if fmt != "table":
        moved = [k for k in TABLE_KEYS if getattr(cfg, k) != default_of(k)]
        if moved:
            raise ConfigError(f"{moved[0]}: {path} is a {fmt} dataset, which has no columns to name")
    table = {k: getattr(cfg, k) for k in TABLE_KEYS}
    dataset = load_dataset(path, kcore=cfg.kcore, format=fmt, **(table if fmt == "table" else {}))
    split = make_split(dataset, cfg.split)
    if cfg.sampled_negatives >= dataset.n_items:
        log.warning(
            "sampled_negatives %d is not below the catalogue's %d items: sampled ranking costs more "
            "than full ranking and ranks nearly the whole catalogue",
            cfg.sampled_negatives,
            dataset.n_items,
        )
    try:
        groups = groups_from_preset(
            split.train, dataset.n_items, cfg.groups, cfg.tail_user_threshold, cfg.tail_item_threshold
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None
    negatives = {
        name: sampled_negatives(
            dataset.sequences,
            split.eval_split(name).users,
            cfg.sampled_negatives,
            dataset.n_items,
            seed=cfg.negatives_seed + i,
        )
        for i, name in enumerate(EVAL_SPLITS)
    }
    return RunData(dataset, split, groups, negatives)


def evaluate_split(
    model: Scorer, data: RunData, cfg: Any, name: str, dist: DistContext | None = None
) -> tuple[dict, dict[str, np.ndarray]]:
    """Metrics of one evaluation split and the per-user ranks they come from (with ``dist``, every
    rank ranks its share of users and receives them all)."""
    split = data.split.eval_split(name)
    ranks = rank_targets(
        model,
        split,
        negatives=data.negatives[name],
        exclude_history=cfg.exclude_history,
        batch_size=cfg.eval_batch_size,
        dist=dist,
    )
    metrics = describe_ranks(ranks, split, data.groups, data.negatives[name], cfg.ks, cfg.exclude_history)
    return metrics, ranks


def final_splits(cfg: Any) -> tuple[str, ...]:
    """The splits a run's final evaluation ranks: validation and test, or validation alone when
    ``evaluate_test`` is off (tuning trials select on validation and never read the test split)."""
    return EVAL_SPLITS if cfg.evaluate_test else ("valid",)


def evaluate_splits(
    model: Scorer, data: RunData, cfg: Any, dist: DistContext | None = None
) -> tuple[dict, dict[str, np.ndarray]]:
    """Metrics of the final splits (:func:`final_splits`) and the ``ranks.npz`` arrays behind them."""
    metrics, arrays = {}, {}
    for name in final_splits(cfg):
        metrics[name], ranks = evaluate_split(model, data, cfg, name, dist)
        arrays.update(rank_arrays(data, name, ranks))
    return metrics, arrays


def rank_arrays(data: RunData, name: str, ranks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What ``ranks.npz`` stores for one split: per-user ranks by protocol and group membership,
    enough to compare runs user by user (paired tests) without reloading data or models."""
    split = data.split.eval_split(name)
    tail_user, tail_item = data.groups.tails(split.users, split.targets)
    return {
        f"{name}_users": split.users,
        f"{name}_tail_user": tail_user,
        f"{name}_tail_item": tail_item,
        **{f"{name}_{protocol}": r for protocol, r in ranks.items()},
    }


def run_metrics(model: Scorer, data: RunData, cfg: Any, dist: DistContext | None = None) -> dict:
    """What ``llmesr evaluate`` reports: the final splits, both protocols, every group."""
    if cfg.reuse_freed_memory:  # the ranking's score blocks, as in training (see llmesr.allocator)
        reuse_freed_memory()
    per_split = evaluate_splits(model, data, cfg, dist)[0]
    return {"model": cfg.model, "dataset": data.dataset_info(), **per_split}


def top_k_frame(
    model: Scorer, data: RunData, split_name: str, k: int, exclude_history: bool, batch_size: int
) -> pd.DataFrame:
    """Each evaluated user's top-k of one split as ``user_id, rank, item_id, score`` (original ids)."""
    split = data.split.eval_split(split_name)
    items, scores = top_k(model, split, k, exclude_history=exclude_history, batch_size=batch_size)
    width = items.shape[1]
    keep = items.ravel() > 0
    return pd.DataFrame(
        {
            "user_id": np.repeat(data.dataset.user_ids[split.users], width)[keep],
            "rank": np.tile(np.arange(1, width + 1), len(split))[keep],
            "item_id": data.dataset.item_ids[items.ravel()][keep],
            "score": scores.ravel()[keep],
        }
    )
