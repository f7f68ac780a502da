"""Top-K similar users by cosine similarity of their prompt embeddings, self excluded: exact
(FAISS), an inverted file searched by matrix products (:mod:`llmesr.semantic.ivf`), or HNSW.

FAISS is imported where it is used: training from finished semantic artifacts does not need it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from llmesr.parallel import DistContext
from llmesr.semantic.ivf import default_lists, default_probes, ivf_search

METHODS = ("auto", "exact", "hnsw", "ivf")
# Up to this many users ``auto`` searches exactly: exact search costs n^2 (about 3 minutes on two
# cores at 200k users, a few percent of embedding their prompts); above it, the IVF (README,
# "Benchmarks").
EXACT_MAX = 200_000

# Queries per exact-search call: bounds the (chunk, k) result buffers and faiss's scratch space.
_EXACT_CHUNK = 4096
# HNSW graph degree and beam widths: on clustered 22k x 384 data they give recall ~1.0 at k=100 in
# seconds. Structureless random data is HNSW's worst case (recall ~0.8, a minute on two cores).
_HNSW_M = 32
_HNSW_EF_CONSTRUCTION = 80
_HNSW_EF_SEARCH = 256


def similar_users(
    user_emb: np.ndarray,
    k: int = 100,
    exact_max: int = EXACT_MAX,
    method: str = "auto",
    seed: int = 0,
    nprobe: int | None = None,
    dist: DistContext | None = None,
) -> np.ndarray:
    """int64 (n, k): row u holds the ``k`` users most similar to user u, most similar first.

    User u never lists itself, even when other users have identical embeddings (self is removed
    by index, not by position). Equal similarities are ordered by lower user index. ``method``:
    ``"exact"`` (flat inner product), ``"ivf"`` (inverted file scored by matrix products,
    :mod:`llmesr.semantic.ivf`), ``"hnsw"``, or ``"auto"`` (exact up to ``exact_max`` users, IVF
    above: the measured crossover). ``seed`` fixes the IVF k-means; ``nprobe`` is the number of IVF
    lists searched per list of users (default :func:`~llmesr.semantic.ivf.default_probes`). Rows an
    approximate index cannot fill are completed by exact search, so every entry is a valid user.
    With a ``dist`` of several ranks (``torchrun``), each rank searches its share of the users and
    every rank receives the whole array, the same as one process computes.
    """
    if method not in METHODS:
        raise ValueError(f"unknown retrieval method {method!r}: use one of {', '.join(METHODS)}")
    x = np.asarray(user_emb)
    if x.ndim != 2:
        raise ValueError(f"user_emb must be 2-D (n_users, dim), got shape {x.shape}")
    n = x.shape[0]
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > n - 1:
        raise ValueError(f"k={k} similar users requested but there are only {n} users: use k <= {n - 1}")
    x = _normalise(x)
    if method == "auto":
        method = "exact" if n <= exact_max else "ivf"
    dist = dist or DistContext()
    with _faiss_threads(torch.get_num_threads()):
        if method == "hnsw":  # one graph, built and searched by rank 0
            found = _finish(x, k, *_search_hnsw(x, k + 1), np.arange(n)) if dist.is_main else None
            return dist.broadcast(found)
        if method == "exact":
            rows = dist.shard(np.arange(n))
            rows_of_rank = [dist.shard_of(np.arange(n), r) for r in range(dist.world)]
            found = _finish(x, k, *_search_exact(x, x[rows], k + 1), rows)
        else:
            nlist = default_lists(n)
            probes = nprobe if nprobe is not None else default_probes(nlist)
            share = ivf_search(x, k + 1, nlist, probes, seed, dist)
            rows, rows_of_rank = share.rows, share.rows_of_rank
            found = _finish(x, k, share.scores, share.ids, rows)
    return dist.gather_rows(found, rows_of_rank, n)


def _finish(x: np.ndarray, k: int, scores: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The ``k`` similar users of ``rows`` from their ``k + 1`` search results: self removed, rows
    the search could not fill redone exactly, then ordered by decreasing similarity and, among
    equal similarities, increasing index (the search's own order may differ among ties)."""
    neighbours, scores = _drop_self(ids, scores, rows=rows)
    short = np.flatnonzero((neighbours < 0).any(axis=1))
    if len(short):
        exact_scores, exact_ids = _search_exact(x, x[rows[short]], k + 1)
        fill_ids, fill_scores = _drop_self(exact_ids, exact_scores, rows=rows[short])
        neighbours[short], scores[short] = fill_ids, fill_scores
    order = np.lexsort((neighbours, -scores), axis=-1)
    return np.take_along_axis(neighbours, order, axis=1)


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Fraction of the exact neighbours (all rows together) that ``approx`` also lists."""
    approx, exact = np.asarray(approx, dtype=np.int64), np.asarray(exact, dtype=np.int64)
    if approx.shape[0] != exact.shape[0]:
        raise ValueError(f"row counts differ: {approx.shape[0]} vs {exact.shape[0]}")
    if exact.size == 0:
        return 1.0
    # One key per (row, neighbour) so a single isin compares every row at once.
    stride = int(max(approx.max(initial=0), exact.max(initial=0))) + 1
    rows = np.arange(exact.shape[0], dtype=np.int64)[:, None] * stride
    valid = approx >= 0
    found = np.isin(exact + rows, (approx + rows)[valid])
    return float(found.mean())


def _normalise(x: np.ndarray) -> np.ndarray:
    """L2-normalised float32 copy (the caller's array is never modified); zero rows stay zero."""
    x = np.array(x, dtype=np.float32, copy=True, order="C")
    if not np.isfinite(x).all():
        raise ValueError("user_emb contains NaN or Inf")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


@contextmanager
def _faiss_threads(n: int) -> Iterator[None]:
    """Run faiss with the same thread budget as torch (the process may share cores with training)."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, n))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _search_exact(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` by inner product; among equal scores the lower index wins, also at the cut."""
    import faiss

    n = base.shape[0]
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    # One extra result shows whether a tie straddles the k-th place. Which of the tied ids faiss
    # keeps depends on its heap order, so those rows are redone with a stable sort.
    width = min(k + 1, n)
    scores = np.empty((len(queries), width), dtype=np.float32)
    ids = np.empty((len(queries), width), dtype=np.int64)
    for s in range(0, len(queries), _EXACT_CHUNK):
        e = s + _EXACT_CHUNK
        scores[s:e], ids[s:e] = index.search(queries[s:e], width)
    tied = np.flatnonzero(scores[:, k - 1] == scores[:, -1]) if width > k else np.zeros(0, np.int64)
    scores, ids = scores[:, :k].copy(), ids[:, :k].copy()
    # Chunk so that one chunk's full score matrix stays around 64 MB.
    rows_per_chunk = max(1, (1 << 24) // max(n, 1))
    for s in range(0, len(tied), rows_per_chunk):
        rows = tied[s : s + rows_per_chunk]
        full = queries[rows] @ base.T
        order = np.argsort(-full, axis=1, kind="stable")[:, :k]
        ids[rows], scores[rows] = order, np.take_along_axis(full, order, axis=1)
    return scores, ids


def _search_hnsw(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    index = faiss.IndexHNSWFlat(x.shape[1], _HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = _HNSW_EF_CONSTRUCTION
    index.add(x)
    index.hnsw.efSearch = max(_HNSW_EF_SEARCH, 2 * k)
    return index.search(x, k)


def _drop_self(
    ids: np.ndarray, scores: np.ndarray, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Remove each query's own id from its k+1 results (or the last result when self is absent,
    which happens when more than k other users tie with it)."""
    n, width = ids.shape
    own = np.arange(n) if rows is None else np.asarray(rows)
    drop = ids == own[:, None]
    drop[~drop.any(axis=1), -1] = True
    keep = ~drop
    return ids[keep].reshape(n, width - 1), scores[keep].reshape(n, width - 1)
