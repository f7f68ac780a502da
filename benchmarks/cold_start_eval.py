"""Cold-start simulation: how well would held-out items be recommended had they been added by
``POST /items`` instead of trained?

    .venv/bin/python benchmarks/cold_start_eval.py runs/beauty_ce_llmesr --users 5000

For test users of an LLM-ESR run, each user's test item is treated as new: its serving row is
rebuilt the way a cold-start item's is (own semantic view through the adapter; ID vector = its own
PCA start row + the mean drift of its 10 most similar *other* trained items by LLM-embedding cosine,
or, the older rule, their mean ID vector; bias = their mean bias), every other item
keeps its trained row, and the test item's full-ranking rank is computed (history excluded, ties
against it). Printed: HR@10 / NDCG@10 with the trained row, with the cold-start row, and with the
semantic view alone (zero ID vector and bias), overall and for tail-item targets. Run by hand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from llmesr.cli import load_run_config
from llmesr.evaluation import exclude_items, metrics_from_ranks
from llmesr.training import model_from_checkpoint, prepare_data


@torch.inference_mode()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--neighbours", type=int, default=10)
    args = p.parse_args()
    cfg = load_run_config(args.run)
    data = prepare_data(cfg)
    model = model_from_checkpoint(args.run / "best.pt", data.dataset.fingerprint())
    if cfg.model != "llmesr":
        raise SystemExit("cold start needs an LLM-ESR run (a semantic view)")
    test = data.split.test
    rows = np.random.default_rng(0).choice(len(test), min(args.users, len(test)), replace=False)
    rows.sort()
    table = model.fused_item_table()  # (N+1, d+1)
    h = model.config.hidden_size
    sem = F.normalize(model.semantic[: model.config.n_items + 1], dim=1)
    targets = torch.from_numpy(test.targets[rows])
    sims = sem[targets] @ sem.T  # (B, N+1)
    sims[:, 0] = -2
    sims[torch.arange(len(targets)), targets] = -2  # never the item itself
    near = torch.topk(sims, args.neighbours, dim=1).indices  # (B, m)
    cold = table[targets].clone()
    cold[:, :h] = table[near, :h].mean(1)
    cold[:, -1] = table[near, -1].mean(1)
    # What the bundle does when it has id_start_map.npy: the item's own PCA start row plus the mean
    # of what training moved its neighbours' rows (the PCA table includes the held-out item here;
    # one item of ~12k barely moves the fit).
    from llmesr.training import semantic_artifacts

    start = torch.from_numpy(semantic_artifacts(cfg, data, h, 0)["item_pca"]).float()
    start_drift = table[targets].clone()
    start_drift[:, :h] = start[targets] + (table[near, :h] - start[near]).mean(1)
    start_drift[:, -1] = table[near, -1].mean(1)
    semantic_only = table[targets].clone()
    semantic_only[:, :h] = 0
    semantic_only[:, -1] = 0

    ranks = {"trained": [], "start + drift": [], "neighbour mean": [], "semantic only": []}
    for start in range(0, len(rows), 512):
        part = rows[start : start + 512]
        sl = slice(start, start + len(part))
        users = model.user_vectors(model.eval_input(test.inputs, part))
        users = torch.cat([users, torch.ones(len(part), 1)], dim=1)
        scores = users @ table.T
        scores[:, 0] = float("-inf")
        exclude_items(scores, test.inputs, part)
        for name, rows_for in (
            ("trained", table[targets[sl]]),
            ("start + drift", start_drift[sl]),
            ("neighbour mean", cold[sl]),
            ("semantic only", semantic_only[sl]),
        ):
            own = (users * rows_for).sum(1)
            others = scores.clone()
            others[torch.arange(len(part)), targets[sl]] = float("-inf")
            ranks[name].append((~(others < own.unsqueeze(1))).sum(1).numpy())
    tail = data.groups.tail_item[test.targets[rows]]
    print(f"{args.run}: {len(rows):,} test users ({int(tail.sum()):,} with a tail-item target)")
    for name, parts in ranks.items():
        r = np.concatenate(parts)
        all_m, tail_m = metrics_from_ranks(r, [10]), metrics_from_ranks(r[tail], [10])
        print(
            f"{name:<14} HR@10 {all_m['HR@10']:.4f}  NDCG@10 {all_m['NDCG@10']:.4f}   "
            f"tail items: HR@10 {tail_m['HR@10']:.4f}  NDCG@10 {tail_m['NDCG@10']:.4f}"
        )


if __name__ == "__main__":
    main()
