"""Cold-start simulation: how would held-out items fare had they been added by ``POST /items``
instead of trained, and what does scoring them optimistically cost everyone else?

    .venv/bin/python benchmarks/cold_start_eval.py runs/beauty_ce_llmesr --split valid

A random set of ``--cold-items`` items that are targets of the chosen split becomes "new" at once:
each gets the row ``Bundle.add_item`` would give it (own semantic view through the adapter; ID row =
its own PCA start + the mean drift of its ``--neighbours`` most similar *warm* items; bias = their
mean) and, for a given optimism beta, the bonus ``ColdItems.bonus`` adds at serving time. Every
user whose target is new, and ``--warm-users`` users whose target is a trained item, are ranked
against the whole catalogue (history excluded, ties against the target). Printed per rule:
HR@10 / NDCG@10 of the new-item targets (overall and tail-item) and HR@10 of the warm-target users
(how much the new items push out). The rows "trained" keep every item's trained row; "neighbour
mean" is the older rule (the neighbours' mean ID row, no start map). Run by hand; choose beta on
``--split valid`` and report ``--split test``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from llmesr.evaluation import exclude_items, metrics_from_ranks
from llmesr.runs import RunFolder
from llmesr.serving.cold_start import ColdItems, estimated_id_row
from llmesr.serving.export import id_start_map


def cold_rows(model, table, cold, start_map, neighbours):
    """Rows and the ColdItems set for the items ``cold`` as Bundle.add_item builds them."""
    h, n = model.config.hidden_size, model.config.n_items
    semantic = model.semantic[: n + 1].float()
    unit = F.normalize(semantic, dim=1)
    sims = unit[cold] @ unit.T
    sims[:, 0] = -2
    sims[:, cold] = -2  # neighbours come from the items that stay trained
    near = torch.topk(sims, neighbours, dim=1).indices
    rows, items = table[cold].clone(), ColdItems.empty(h)
    for j, item in enumerate(cold.tolist()):
        e = semantic[item : item + 1]
        id_row, drift = estimated_id_row(e, semantic[near[j]], table[near[j], :h], start_map)
        rows[j, :h] = id_row[0]
        rows[j, -1] = table[near[j], -1].mean()
        items = items.add(item, drift)
    return rows, items


@torch.inference_mode()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--split", choices=("valid", "test"), default="test")
    p.add_argument("--cold-items", type=int, default=300)
    p.add_argument("--warm-users", type=int, default=4000)
    p.add_argument("--neighbours", type=int, default=10)
    p.add_argument("--optimism", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5, 2.0])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    run = RunFolder(args.run).load()
    cfg, data, model = run.config, run.data, run.model
    if not model.cold_start_items:
        raise SystemExit(f"cold start needs a model with a semantic view for new items, not {cfg.model}")
    split = data.split.valid if args.split == "valid" else data.split.test
    table, h = model.fused_item_table(), model.config.hidden_size
    rng = np.random.default_rng(args.seed)
    cold = torch.from_numpy(np.sort(rng.choice(np.unique(split.targets), args.cold_items, replace=False)))

    start_map = id_start_map(cfg, data, model)  # what the exported bundle carries; None without a PCA start
    start_map = None if start_map is None else torch.from_numpy(start_map)
    rows, items = cold_rows(model, table, cold, start_map, args.neighbours)
    mean_rows, mean_items = cold_rows(model, table, cold, None, args.neighbours)

    new_target = np.isin(split.targets, cold.numpy())
    warm_pool = np.flatnonzero(~new_target)
    warm = rng.choice(warm_pool, min(args.warm_users, len(warm_pool)), replace=False)
    users_idx = np.concatenate([np.flatnonzero(new_target), np.sort(warm)])
    is_new = np.arange(len(users_idx)) < int(new_target.sum())
    rules = {"trained": (None, None, 0.0), "neighbour mean": (mean_rows, mean_items, 0.0)}
    rules.update({f"beta = {b:g}": (rows, items, b) for b in args.optimism})
    ranks = {name: [] for name in rules}
    for s in range(0, len(users_idx), 512):
        part = users_idx[s : s + 512]
        users = model.user_vectors(model.eval_input(split.inputs, part))
        users = torch.cat([users, torch.ones(len(part), 1)], dim=1)
        base = users @ table.T
        for name, (cold_table, cold_items, beta) in rules.items():
            scores = base.clone()
            if cold_table is not None:
                scores[:, cold] = users @ cold_table.T + cold_items.bonus(users[:, :h], beta)
            scores[:, 0] = float("-inf")
            exclude_items(scores, split.inputs, part)
            target = scores[torch.arange(len(part)), torch.from_numpy(split.targets[part])]
            ranks[name].append((scores >= target.unsqueeze(1)).sum(1).numpy())
    tail = data.groups.tail_item[split.targets[users_idx]]
    print(
        f"{args.run} ({args.split}): {len(cold)} new items, {int(is_new.sum()):,} users with a new-item "
        f"target ({int((is_new & tail).sum()):,} tail), {int((~is_new).sum()):,} with a trained target"
    )
    for name, parts in ranks.items():
        r = np.concatenate(parts)
        new, new_tail, old = (metrics_from_ranks(x, [10]) for x in (r[is_new], r[is_new & tail], r[~is_new]))
        print(
            f"{name:<15} new targets HR@10 {new['HR@10']:.4f} NDCG@10 {new['NDCG@10']:.4f} "
            f"(tail HR@10 {new_tail['HR@10']:.4f}, median rank {np.median(r[is_new]):.0f})   "
            f"trained targets HR@10 {old['HR@10']:.4f}"
        )


if __name__ == "__main__":
    main()
