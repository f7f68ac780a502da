"""How llmesr scales end to end: synthetic long-tailed data, one process or several under torchrun.

    .venv/bin/python benchmarks/bench_scale.py --users 1000000 --items 500000
    torchrun --standalone --nproc_per_node 2 benchmarks/bench_scale.py --users 1000000 --items 500000

Data: item popularity is Zipf (exponent 1.1) over ``--items`` ids, of which the rarest never occur
(1M users / 500k ids: 375,516 items occur), history lengths log-normal (median 6, like Beauty, at
least 3); written as a ``sequences.txt`` by rank 0 and read back the way users load data, then a
leave-one-out split. Stages, each timed on every rank (the slowest rank is printed):

- ``embed``: the default text encoder on ``--embed-users`` synthetic user prompts (titles made of
  random words, built by the library's prompt rule), each rank encoding its share of the cache
  batches as ``torchrun ... llmesr embed`` does. Scaled to all users: an **extrapolation**.
- ``retrieval``: ``similar_users`` (k = 100, ``retrieval: auto``) over every user, on user vectors
  shaped like real ones (normalised means of MiniLM item vectors of an ``llmesr embed`` folder,
  ``--item-embeddings``; Gaussian topics without it); recall@100 against exact search on 1,000
  users, by id and tie-aware (a found user as similar as the exact 100th counts).
- ``train``: SASRec (hidden 64, max length 50, BCE with one negative, batch 1024) for
  ``--train-batches`` batches, DDP-sharded under torchrun, scaled to one epoch: an **extrapolation**.
- ``eval``: full ranking of every user's test target against the whole catalogue of ``--items``
  ids (those never drawn are items nobody bought: scored and ranked like the rest) plus the
  sampled-100 protocol (fixed negatives), exactly as ``llmesr evaluate``: measured, not scaled.

Peak resident memory of each rank closes the report. Run by hand.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from llmesr.allocator import reuse_freed_memory
from llmesr.config import RunConfig, apply_overrides
from llmesr.data.dataset import load_dataset
from llmesr.data.split import make_split
from llmesr.evaluation import per_user, rank_targets, sampled_negatives
from llmesr.models import build_model, model_config
from llmesr.parallel import DistContext, init_distributed
from llmesr.semantic import make_encoder
from llmesr.semantic.cache import encode_share
from llmesr.semantic.prompts import user_prompts
from llmesr.semantic.retrieval import recall_at_k, similar_users
from llmesr.training.distributed import wrap

HERE = Path(__file__).resolve().parent


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def write_synthetic(folder: Path, n_users: int, n_items: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    lengths = np.maximum(3, np.round(rng.lognormal(np.log(6), 0.9, n_users))).astype(np.int64)
    lengths = np.minimum(lengths, 500)
    p = np.arange(1, n_items + 1, dtype=np.float64) ** -1.1
    items = rng.choice(n_items, size=int(lengths.sum()), p=p / p.sum()) + 1
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    folder.mkdir(parents=True, exist_ok=True)
    tokens = items.astype(str)
    with open(folder / "sequences.txt", "w") as f:
        for u in range(n_users):
            f.write(f"u{u} {' '.join(tokens[offsets[u] : offsets[u + 1]])}\n")
    return int(lengths.sum())


class Stages:
    """Wall seconds per stage, the slowest rank's (every rank enters and leaves each together)."""

    def __init__(self, dist: DistContext) -> None:
        self.dist, self.seconds = dist, {}

    def run(self, name: str, fn):
        self.dist.barrier()
        start = time.perf_counter()
        out = fn()
        self.dist.barrier()
        self.seconds[name] = time.perf_counter() - start
        if self.dist.is_main:
            print(f"  {name}: {self.seconds[name]:.1f} s", flush=True)
        return out


def synthetic_titles(n_items: int, rng: np.random.Generator) -> np.ndarray:
    words = np.array([f"w{i}" for i in range(5000)])
    picks = rng.integers(0, len(words), size=(n_items + 1, 6))
    return np.array([" ".join(words[row]) for row in picks], dtype=object)


def embed_stage(split, n_items: int, args, dist: DistContext) -> float:
    """Seconds to encode ``--embed-users`` user prompts (this rank's share of their batches)."""
    rows = np.random.default_rng(1).choice(len(split.train), args.embed_users, replace=False)
    titles = synthetic_titles(n_items, np.random.default_rng(2))
    texts = user_prompts(split.train.take(np.sort(rows)), titles)
    encoder = make_encoder("minilm")
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        encode_share(texts, encoder, Path(cache), 256, dist.rank, dist.world, progress=False)
        dist.barrier()
        return time.perf_counter() - start


def user_vectors(n_users: int, path: str | None) -> np.ndarray:
    import sys

    sys.path.insert(0, str(HERE))
    from bench_retrieval import catalogue, synthetic_users

    rng = np.random.default_rng(0)
    return synthetic_users(catalogue(path, 12_000, 384, rng), n_users, rng)


def retrieval_recall(users: np.ndarray, found: np.ndarray) -> tuple[float, float]:
    import sys

    sys.path.insert(0, str(HERE))
    from bench_retrieval import exact_neighbours

    queries = np.sort(np.random.default_rng(5).choice(len(users), 1000, replace=False))
    truth = exact_neighbours(users, queries, 100)
    kth = np.einsum("qd,qd->q", users[queries], users[truth[:, -1]])
    sims = np.einsum("qd,qkd->qk", users[queries], users[found[queries]])
    tie_aware = np.minimum((sims >= kth[:, None] - 1e-6).sum(1), 100).mean() / 100
    return recall_at_k(found[queries], truth), float(tie_aware)


def train_stage(split, n_items: int, args, dist: DistContext) -> tuple[float, torch.nn.Module]:
    """Seconds for ``--train-batches`` DDP-sharded batches, scaled to one epoch."""
    cfg = apply_overrides(RunConfig(), {"loss": "bce", "negatives": 1, "max_len": 50}, "bench")
    model = build_model("sasrec", model_config("sasrec", {"n_items": n_items, **cfg.model_settings()}))
    loss_fn = wrap(model, dist)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rows_all = np.flatnonzero(split.train.lengths >= 2)
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(dist.rank)
    model.train()
    start = time.perf_counter()
    for _ in range(args.train_batches):
        rows = dist.shard(rng.choice(rows_all, args.batch_size, replace=False))
        loss = loss_fn(model.train_input(split.train, rows), gen, rows)
        opt.zero_grad()
        loss.backward()
        opt.step()
    per_batch = (time.perf_counter() - start) / args.train_batches
    return per_batch * np.ceil(len(rows_all) / args.batch_size), model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=500_000)
    p.add_argument("--stages", nargs="+", default=["embed", "retrieval", "train", "eval"])
    p.add_argument("--embed-users", type=int, default=1000)
    p.add_argument("--item-embeddings", default=None, help="item_embeddings.npy of an llmesr embed folder")
    p.add_argument("--nprobe", type=int, default=None, help="IVF lists searched (default: the library's)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--train-batches", type=int, default=20)
    p.add_argument("--eval-batch", type=int, default=1024)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    dist = init_distributed()
    if args.threads:
        torch.set_num_threads(args.threads)
    reuse_freed_memory()  # what training and llmesr evaluate do by default (llmesr.allocator)
    main_print = print if dist.is_main else (lambda *a, **k: None)
    threads = torch.get_num_threads()
    main_print(f"{args.users:,} users x {args.items:,} items, {dist.world} rank(s) x {threads} threads")
    stages = Stages(dist)
    tmp = Path(dist.broadcast(tempfile.mkdtemp() if dist.is_main else None))  # one folder for all ranks
    if dist.is_main:
        n = write_synthetic(tmp / "data", args.users, args.items)
        main_print(f"  {n:,} interactions written")
    dataset = stages.run("load", lambda: load_dataset(tmp / "data"))
    if dist.is_main:
        shutil.rmtree(tmp)
    split = stages.run("split", lambda: make_split(dataset, "leave_one_out"))
    n_users, n_items = dataset.n_users, dataset.n_items
    main_print(f"  loaded: {n_users:,} users, {n_items:,} items that occur (of {args.items:,} ids drawn)")
    figures = {}
    if "embed" in args.stages:
        seconds = stages.run("embed sample", lambda: embed_stage(split, n_items, args, dist))
        figures["embed (extrapolated)"] = seconds * n_users / args.embed_users
    if "retrieval" in args.stages:
        users = user_vectors(n_users, args.item_embeddings)
        found = stages.run("retrieval", lambda: similar_users(users, k=100, nprobe=args.nprobe, dist=dist))
        if dist.is_main:
            by_id, tie_aware = retrieval_recall(users, found)
            main_print(f"  recall@100 by id {by_id:.4f}, tie-aware {tie_aware:.4f}")
        del users, found
    if "train" in args.stages:
        epoch, _ = stages.run("train batches", lambda: train_stage(split, n_items, args, dist))
        figures["train epoch (extrapolated)"] = epoch
    if "eval" in args.stages:
        catalogue = max(args.items, n_items)  # every id drawn, bought or not
        settings = apply_overrides(RunConfig(), {"max_len": 50}, "bench").model_settings()
        model = build_model("sasrec", model_config("sasrec", {"n_items": catalogue, **settings}))
        main_print(f"  ranking against {catalogue:,} items")
        test = split.test
        negatives = stages.run(
            "negatives", lambda: sampled_negatives(dataset.sequences, test.users, 100, catalogue, 0)
        )
        options = {"negatives": negatives, "batch_size": args.eval_batch, "dist": dist}
        ranks = stages.run("eval", lambda: rank_targets(model, test, **options))
        main_print(f"  full NDCG@10 {per_user(ranks['full'], 'NDCG@10').mean():.5f}")
    for name, value in figures.items():
        main_print(f"  {name}: {value:.0f} s")
    peaks = dist.gather_shards(np.array([peak_gib()]), dist.world)
    main_print("  peak GiB per rank: " + ", ".join(f"{v:.2f}" for v in peaks))
    dist.close()


if __name__ == "__main__":
    main()
