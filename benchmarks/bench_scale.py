"""How the library scales: synthetic long-tailed data at growing sizes.

    .venv/bin/python benchmarks/bench_scale.py --sizes 100000:50000 1000000:500000

For each USERS:ITEMS size: item popularity is Zipf (exponent 1.1) and history lengths are
log-normal (median 6, like Beauty, at least 3). The data is written as a ``sequences.txt`` and read
back the way users load data; then timed: load + remap, leave-one-out split, one SASRec training
epoch (BCE-1, hidden 64, max length 50, batch 1024; timed on ``--train-batches`` batches and scaled
to the epoch), a chunked full-ranking evaluation (``--eval-users`` users, scaled to all; memory per
chunk is batch x items x 4 bytes), and similar-user retrieval on random 384-d embeddings (FAISS,
exact or HNSW as the library picks). Peak memory is the process's RSS after each size. Run by hand.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from llmesr.config import RunConfig, apply_overrides
from llmesr.data.dataset import load_dataset
from llmesr.data.sequences import Sequences
from llmesr.data.split import EvalSplit, make_split
from llmesr.evaluation import rank_targets
from llmesr.models import build_model, model_config
from llmesr.semantic.retrieval import similar_users


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def write_synthetic(folder: Path, n_users: int, n_items: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    lengths = np.maximum(3, np.round(rng.lognormal(np.log(6), 0.9, n_users))).astype(np.int64)
    lengths = np.minimum(lengths, 500)
    ranks = np.arange(1, n_items + 1, dtype=np.float64)
    p = ranks**-1.1
    items = rng.choice(n_items, size=int(lengths.sum()), p=p / p.sum()) + 1
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "sequences.txt", "w") as f:
        tokens = items.astype(str)
        for u in range(n_users):
            f.write(f"u{u} {' '.join(tokens[offsets[u] : offsets[u + 1]])}\n")
    return int(lengths.sum())


def bench(n_users: int, n_items: int, args) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        n = write_synthetic(Path(tmp) / "data", n_users, n_items)
        out["write"] = time.perf_counter() - t
        t = time.perf_counter()
        ds = load_dataset(Path(tmp) / "data")
        out["load"] = time.perf_counter() - t
    t = time.perf_counter()
    split = make_split(ds, "leave_one_out")
    out["split"] = time.perf_counter() - t
    out["interactions"] = n

    cfg = apply_overrides(RunConfig(), {"loss": "bce", "negatives": 1, "max_len": 50}, "bench")
    model = build_model("sasrec", model_config("sasrec", {"n_items": ds.n_items, **cfg.model_settings()}))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = split.train
    rows_all = np.flatnonzero(train.lengths >= 2)
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    model.train()
    t = time.perf_counter()
    for _ in range(args.train_batches):
        rows = rng.choice(rows_all, args.batch_size, replace=False)
        loss = model.loss(model.train_input(train, rows), gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    per_batch = (time.perf_counter() - t) / args.train_batches
    out["epoch"] = per_batch * np.ceil(len(rows_all) / args.batch_size)

    test = split.test
    s = min(args.eval_users, len(test))
    first = Sequences.from_lengths(test.inputs.items[: test.inputs.offsets[s]], test.inputs.lengths[:s])
    t = time.perf_counter()
    rank_targets(model, EvalSplit(test.users[:s], first, test.targets[:s]), batch_size=args.eval_batch)
    out["eval"] = (time.perf_counter() - t) * len(test) / s

    emb = np.random.default_rng(1).standard_normal((ds.n_users, 384)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    t = time.perf_counter()
    similar_users(emb[: args.retrieval_users], k=100)
    out["retrieval"] = time.perf_counter() - t
    out["retrieval_users"] = min(args.retrieval_users, ds.n_users)
    out["peak_gib"] = peak_gib()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["100000:50000", "1000000:500000"], metavar="USERS:ITEMS")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--train-batches", type=int, default=20)
    p.add_argument("--eval-users", type=int, default=20000)
    p.add_argument("--eval-batch", type=int, default=256)
    p.add_argument("--retrieval-users", type=int, default=1_000_000)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"{'users':>9} {'items':>8} {'inter.':>10} {'write s':>8} {'load s':>7} {'split s':>7} "
        f"{'epoch s':>8} {'eval s':>8} {'retr. s':>8} {'peak GiB':>8}"
    )
    for size in args.sizes:
        users, items = (int(x) for x in size.split(":"))
        r = bench(users, items, args)
        print(
            f"{users:>9,} {items:>8,} {r['interactions']:>10,} {r['write']:>8.1f} {r['load']:>7.1f} "
            f"{r['split']:>7.2f} {r['epoch']:>8.0f} {r['eval']:>8.0f} {r['retrieval']:>8.1f} "
            f"{r['peak_gib']:>8.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
