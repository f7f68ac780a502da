"""Block size of full-ranking evaluation: seconds per block width at a large catalogue.

    .venv/bin/python benchmarks/bench_blocks.py --items 500000 --users 8192 --threads 2

``llmesr.ranking.rank_in_blocks`` scores a batch of users against one block of item columns at a
time and counts each block while it is in cache. This times it for several block sizes (MiB of
float32 scores per block) on random 64-d factors with a bias and ten excluded history items per
user, the sampled protocol's 100 negatives included, in the evaluation's batch size. The block
sizes take turns ``--repeats`` times so that other load hits them alike; the median is printed,
with the time scaled to 1M users (linear in users). It also checks that every size gives the same
ranks as the first (random scores: no near-ties). Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import llmesr.ranking as ranking
from llmesr.allocator import reuse_freed_memory


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=500_000)
    p.add_argument("--users", type=int, default=8192)
    p.add_argument("--batch", type=int, default=1024, help="users per evaluation batch")
    p.add_argument("--mib", type=float, nargs="+", default=[0.5, 1, 2, 4, 8])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    reuse_freed_memory()  # as training and llmesr evaluate do by default
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(args.items + 1, 64, generator=gen)
    bias = torch.randn(args.items + 1, generator=gen)
    users = torch.randn(args.users, 64, generator=gen)
    targets = torch.randint(1, args.items + 1, (args.users,), generator=gen)
    history = torch.randint(1, args.items + 1, (args.users, 10), generator=gen)
    negatives = torch.randint(1, args.items + 1, (args.users, 100), generator=gen)
    default = ranking._BLOCK_FLOATS
    times: dict[float, list[float]] = {mib: [] for mib in args.mib}
    ranks: dict[float, np.ndarray] = {}
    columns: dict[float, int] = {}
    try:
        for _ in range(args.repeats):
            for mib in args.mib:
                ranking._BLOCK_FLOATS = int(mib * (1 << 20) / 4)
                columns[mib] = ranking.block_columns(args.batch, args.items + 1)
                start, out = time.perf_counter(), []
                for s in range(0, args.users, args.batch):
                    rows = torch.arange(s, min(s + args.batch, args.users))
                    excluded = (torch.arange(len(rows)).repeat_interleave(10), history[rows].reshape(-1))
                    full, _ = ranking.rank_in_blocks(
                        users[rows], table, bias, targets[rows], excluded=excluded, negatives=negatives[rows]
                    )
                    out.append(full.numpy())
                times[mib].append(time.perf_counter() - start)
                ranks[mib] = np.concatenate(out)
    finally:
        ranking._BLOCK_FLOATS = default
    first = args.mib[0]
    print(
        f"{args.users:,} users x {args.items:,} items, batch {args.batch}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}"
    )
    for mib in args.mib:
        med = float(np.median(times[mib]))
        same = "same ranks" if np.array_equal(ranks[mib], ranks[first]) else "RANKS DIFFER"
        print(
            f"  {mib:4g} MiB blocks ({columns[mib]:,} columns): {med:7.2f} s"
            f"  ->  {med * 1e6 / args.users:7.0f} s per 1M users  ({same})"
        )


if __name__ == "__main__":
    main()
