"""Similar-user retrieval at scale: time, peak memory and recall@100 of each FAISS method.

    .venv/bin/python benchmarks/bench_retrieval.py --users 1000000 \
        --item-embeddings ~/.cache/llmesr/semantic/beauty-*/*/item_embeddings.npy

Users are synthetic but shaped like real ones: each is the normalised mean of the LLM embeddings of
its items, drawn from a Zipf(1.1) popularity over the catalogue, with log-normal history lengths
(median 6, as on Beauty). With ``--item-embeddings`` (the ``item_embeddings.npy`` of an
``llmesr embed`` folder) the catalogue is real MiniLM vectors, whose topical clusters are what
make approximate search work; without it, a Gaussian mixture of 200 topics stands in. Uniformly
random vectors (the scale benchmark's) are the worst case of every approximate index and say
little about real data.

For each ``--methods`` entry, ``llmesr.semantic.retrieval.similar_users`` runs over all users
(k = 100, the library's settings; ``--nprobe`` for IVF) and prints wall time, the peak resident
memory so far, and recall@100 against exact search on ``--recall-queries`` random users. Run by
hand.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from llmesr.semantic.retrieval import recall_at_k, similar_users


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def catalogue(path: str | None, n_items: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    if path:
        items = np.load(path).astype(np.float32)
        norms = np.linalg.norm(items, axis=1, keepdims=True)
        return (items / np.maximum(norms, 1e-12))[norms[:, 0] > 0]  # row 0 is the padding item
    topics = rng.standard_normal((200, dim)).astype(np.float32)
    noise = rng.standard_normal((n_items, dim)).astype(np.float32)
    items = topics[rng.integers(0, 200, n_items)] + 0.6 * noise
    return items / np.linalg.norm(items, axis=1, keepdims=True)


def synthetic_users(
    items: np.ndarray, n_users: int, rng: np.random.Generator, chunk: int = 50_000
) -> np.ndarray:
    """(n_users, dim) float32: normalised means of Zipf-drawn items, log-normal lengths."""
    popularity = 1.0 / np.arange(1, len(items) + 1) ** 1.1
    popularity = popularity[rng.permutation(len(items))]
    cdf = np.cumsum(popularity / popularity.sum())
    users = np.empty((n_users, items.shape[1]), dtype=np.float32)
    for start in range(0, n_users, chunk):
        n = min(chunk, n_users - start)
        lengths = np.clip(np.round(rng.lognormal(np.log(6), 0.8, n)), 1, 200).astype(np.int64)
        picks = np.searchsorted(cdf, rng.random(int(lengths.sum())), side="right").clip(max=len(items) - 1)
        owner = np.repeat(np.arange(n), lengths)
        sums = np.zeros((n, items.shape[1]), dtype=np.float32)
        np.add.at(sums, owner, items[picks])
        users[start : start + n] = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    return users


def exact_neighbours(users: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The exact top-k of the query rows (self removed), by brute force in chunks."""
    x = torch.from_numpy(users)
    q = x[torch.from_numpy(queries)]
    best = torch.full((len(q), k + 1), -2.0), torch.zeros(len(q), k + 1, dtype=torch.long)
    for start in range(0, len(x), 200_000):
        scores = q @ x[start : start + 200_000].T
        values = torch.cat([best[0], scores], 1)
        ids = torch.cat([best[1], torch.arange(start, start + scores.shape[1]).expand(len(q), -1)], 1)
        top = torch.topk(values, k + 1, dim=1)
        best = top.values, torch.gather(ids, 1, top.indices)
    ids = best[1].numpy()
    keep = ids != queries[:, None]
    return np.stack([row[mask][:k] for row, mask in zip(ids, keep, strict=True)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--item-embeddings", default=None, help="item_embeddings.npy of an llmesr embed folder")
    p.add_argument("--methods", nargs="+", default=["ivf", "hnsw"], choices=["exact", "ivf", "hnsw"])
    p.add_argument("--nprobe", type=int, default=None, help="IVF lists searched (default: the library's)")
    p.add_argument("--recall-queries", type=int, default=1000)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    items = catalogue(args.item_embeddings, 12_000, 384, rng)
    t = time.perf_counter()
    users = synthetic_users(items, args.users, rng)
    print(
        f"{args.users:,} users x {users.shape[1]} ({users.nbytes / 2**30:.2f} GiB) from {len(items):,} items "
        f"({'real' if args.item_embeddings else 'synthetic'}) in {time.perf_counter() - t:.1f} s; "
        f"{torch.get_num_threads()} threads"
    )
    queries = np.sort(rng.choice(args.users, min(args.recall_queries, args.users), replace=False))
    t = time.perf_counter()
    truth = exact_neighbours(users, queries, 100)
    print(f"exact top-100 of {len(queries):,} query users: {time.perf_counter() - t:.1f} s")
    print(f"{'method':<8} {'seconds':>9} {'recall@100':>11} {'peak GiB':>9}")
    for method in args.methods:
        t = time.perf_counter()
        found = similar_users(users, k=100, method=method, nprobe=args.nprobe)
        seconds = time.perf_counter() - t
        recall = recall_at_k(found[queries], truth)
        print(f"{method:<8} {seconds:>9.1f} {recall:>11.4f} {peak_gib():>9.2f}", flush=True)
        del found


if __name__ == "__main__":
    main()
