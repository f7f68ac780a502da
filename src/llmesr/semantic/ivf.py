"""Approximate top-k inner-product search of a set of vectors against itself: an inverted file
(IVF) searched list by list with matrix products.

Similar-user retrieval asks, for every one of n users, its k most similar users among the same n.
An IVF splits the users into ``nlist`` lists around k-means centroids and searches each user among
the members of a few lists only. FAISS's ``IndexIVFFlat`` scans each (query, list) pair with a
vector loop, at memory speed (about 200 ns per 384-d vector on two cores). Here the queries are
the base, so they are taken list by list: the users of one list are scored against the members of
the ``nprobe`` lists whose centroids are nearest to their own list's, in one matrix product, and
each keeps its top k. Users are stored list by list, so a list's users are one slice; the work is
the same number of inner products as probing ``nprobe`` lists per user, at matrix-product speed.
A user near the edge of its list is searched in the lists around its list rather than around
itself, which the measured recall accounts for (README, "Benchmarks").

FAISS trains the coarse quantizer (spherical k-means on a seeded sample). Under ``torchrun`` rank
0 trains it and broadcasts the centroids; the ranks assign their shares of users to lists, gather
the assignments, and search the users of a strided share of the lists, so the result does not
depend on the number of ranks. Each rank keeps its own share; the caller assembles the shares once,
after its own per-row work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from llmesr.parallel import DistContext

# Queries per chunk of the coarse search: bounds the (chunk, nlist) score matrix.
_COARSE_CHUNK = 8192


def default_lists(n: int) -> int:
    """About 4 sqrt(n) lists, with at least 39 users per list (FAISS's k-means minimum)."""
    return max(1, min(round(4 * math.sqrt(n)), n // 39))


def default_probes(nlist: int) -> int:
    """Lists searched per list of users: 2 sqrt(nlist), at least 16 (recall@100 and time measured
    on Beauty-shaped users in the README, "Benchmarks")."""
    return min(nlist, max(16, round(2 * math.sqrt(nlist))))


def train_centroids(x: np.ndarray, nlist: int, seed: int) -> np.ndarray:
    """(nlist, d) unit-norm centroids: FAISS spherical k-means, 10 iterations on a seeded sample of
    40 users per list (FAISS's minimum is 39)."""
    import faiss

    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(x), size=min(len(x), 40 * nlist), replace=False))
    kmeans = faiss.Kmeans(x.shape[1], nlist, niter=10, seed=seed, spherical=True, verbose=False)
    kmeans.train(np.ascontiguousarray(x[sample]))
    return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)


def nearest_lists(x: torch.Tensor, rows: np.ndarray, centroids: torch.Tensor, nprobe: int) -> torch.Tensor:
    """(len(rows), nprobe) int64: each row's most similar centroids, most similar first."""
    out = torch.empty((len(rows), nprobe), dtype=torch.int64)
    for start in range(0, len(rows), _COARSE_CHUNK):
        chunk = torch.from_numpy(rows[start : start + _COARSE_CHUNK])
        out[start : start + len(chunk)] = torch.topk(x[chunk] @ centroids.T, nprobe, dim=1).indices
    return out


def _grouped(keys: np.ndarray, values: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """``values`` ordered by ``keys`` (stable) and the CSR offsets of each key's run."""
    order = np.argsort(keys, kind="stable")
    offsets = np.zeros(n_keys + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=n_keys), out=offsets[1:])
    return values[order], offsets


@dataclass(frozen=True)
class IVFShare:
    """What one rank found: the top ``k`` of the users ``rows`` (its lists' members, list by list)
    and, to assemble every rank's share, the rows each rank holds (``rows_of_rank``)."""

    rows: np.ndarray
    scores: np.ndarray  # (len(rows), k) float32, -inf where the probed lists hold fewer than k
    ids: np.ndarray  # (len(rows), k) int64, -1 there
    rows_of_rank: list[np.ndarray]


def ivf_search(
    x: np.ndarray, k: int, nlist: int, nprobe: int, seed: int, dist: DistContext | None = None
) -> IVFShare:
    """This rank's share of the search: for each user of a strided share of the lists (all lists
    on one process), its top ``k`` by inner product among the members of the ``nprobe`` lists
    nearest to its own list's centroid (its own list first). The shares of all ranks cover every
    user once; ``DistContext.gather_rows`` with ``rows_of_rank`` assembles them."""
    dist = dist or DistContext()
    n = len(x)
    nprobe = min(nprobe, nlist)
    centroids = dist.broadcast(train_centroids(x, nlist, seed) if dist.is_main else None)
    xt, ct = torch.from_numpy(x), torch.from_numpy(centroids)
    mine = dist.shard(np.arange(n))
    home = dist.gather_shards(nearest_lists(xt, mine, ct, 1)[:, 0].numpy(), n)
    members, offsets = _grouped(home, np.arange(n), nlist)
    by_list = xt[torch.from_numpy(members)]  # the users list by list: each list is one slice
    probed = torch.topk(ct @ ct.T, nprobe, dim=1).indices.numpy()  # a list's own first
    lists = dist.shard(np.arange(nlist))
    scores = np.full((int(np.diff(offsets)[lists].sum()), k), -np.inf, dtype=np.float32)
    ids = np.full(scores.shape, -1, dtype=np.int64)
    at = 0
    for lst in lists:
        own = by_list[offsets[lst] : offsets[lst + 1]]
        if len(own) == 0:
            continue
        run = _positions(offsets, probed[lst])
        top = torch.topk(own @ by_list[torch.from_numpy(run)].T, min(k, len(run)), dim=1)
        width = top.values.shape[1]
        scores[at : at + len(own), :width] = top.values.numpy()
        ids[at : at + len(own), :width] = members[run][top.indices.numpy()]
        at += len(own)
    shares = [members[_positions(offsets, dist.shard_of(np.arange(nlist), r))] for r in range(dist.world)]
    return IVFShare(rows=shares[dist.rank], scores=scores, ids=ids, rows_of_rank=shares)


def _positions(offsets: np.ndarray, lists: np.ndarray) -> np.ndarray:
    """Positions, in the list-by-list order, of the members of ``lists`` (in that order)."""
    parts = [np.arange(offsets[lst], offsets[lst + 1]) for lst in lists]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
