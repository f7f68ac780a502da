"""Similar-user retrieval: exactness, tie order, self exclusion, approximate recall, errors."""

from __future__ import annotations

import subprocess
import sys

import faiss
import numpy as np
import pytest

from llmesr.semantic.retrieval import recall_at_k, similar_users


def brute_force(x: np.ndarray, k: int) -> np.ndarray:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def test_exact_equals_brute_force_cosine() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 16)) * rng.uniform(0.1, 10.0, size=(300, 1))  # norms vary
    k = 10
    # Tie-free construction: the top k+1 similarities of every row are separated by far more than
    # float32 rounding, so the order is unambiguous.
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    top = -np.sort(-sims, axis=1)[:, : k + 1]
    assert np.diff(top, axis=1).max() < -1e-5
    out = similar_users(x.astype(np.float32), k=k, method="exact")
    assert out.dtype == np.int64 and out.shape == (300, k)
    np.testing.assert_array_equal(out, brute_force(x, k))


def test_ties_are_ordered_by_lower_index_also_at_the_cut() -> None:
    # One-hot rows: similarities are exactly 1 (same hot column) or 0, so there are many exact ties.
    x = np.eye(3, dtype=np.float32)[np.arange(12) % 3]
    out = similar_users(x, k=5, method="exact")
    expected = np.array(
        [
            [3, 6, 9, 1, 2],
            [4, 7, 10, 0, 2],
            [5, 8, 11, 0, 1],
            [0, 6, 9, 1, 2],
            [1, 7, 10, 0, 2],
            [2, 8, 11, 0, 1],
            [0, 3, 9, 1, 2],
            [1, 4, 10, 0, 2],
            [2, 5, 11, 0, 1],
            [0, 3, 6, 1, 2],
            [1, 4, 7, 0, 2],
            [2, 5, 8, 0, 1],
        ]
    )
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("method", ["exact", "hnsw", "ivf"])
def test_self_is_excluded_even_among_duplicates(method: str) -> None:
    x = np.tile(np.array([[0.3, -1.2, 2.0, 0.5]], dtype=np.float32), (50, 1))
    out = similar_users(x, k=4, method=method)
    assert not (out == np.arange(50)[:, None]).any()
    assert ((out >= 0) & (out < 50)).all()
    assert all(len(set(row)) == 4 for row in out.tolist())
    if method == "exact":
        np.testing.assert_array_equal(out[0], [1, 2, 3, 4])
        np.testing.assert_array_equal(out[2], [0, 1, 3, 4])
        np.testing.assert_array_equal(out[49], [0, 1, 2, 3])
    full = similar_users(x[:6], k=5, method="exact")
    np.testing.assert_array_equal(full[3], [0, 1, 2, 4, 5])


def clustered(n: int, d: int, n_clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d))
    return (centres[rng.integers(n_clusters, size=n)] + 0.5 * rng.standard_normal((n, d))).astype(np.float32)


def test_approximate_methods_recall() -> None:
    x = clustered(5000, 32, 40, seed=0)
    exact = similar_users(x, k=20, method="exact")
    for method in ("hnsw", "ivf"):
        approx = similar_users(x, k=20, method=method)
        assert approx.shape == (5000, 20)
        assert not (approx == np.arange(5000)[:, None]).any()
        assert recall_at_k(approx, exact) >= 0.9, method
    assert recall_at_k(exact, exact) == 1.0


def test_ivf_rows_it_cannot_fill_are_completed_exactly() -> None:
    # 400 users in 10 lists of ~40; 30 neighbours + self from one probed list often run short.
    x = clustered(400, 8, 10, seed=1)
    out = similar_users(x, k=30, method="ivf", nprobe=1)
    assert ((out >= 0) & (out < 400)).all()
    assert not (out == np.arange(400)[:, None]).any()
    assert all(len(set(row)) == 30 for row in out.tolist())
    assert recall_at_k(out, similar_users(x, k=30, method="exact")) >= 0.9


def test_auto_picks_exact_below_the_threshold_and_ivf_is_seeded() -> None:
    x = clustered(600, 16, 6, seed=2)
    np.testing.assert_array_equal(similar_users(x, k=8), similar_users(x, k=8, method="exact"))
    big = similar_users(x, k=8, exact_max=100)  # the IVF above exact_max
    np.testing.assert_array_equal(big, similar_users(x, k=8, method="ivf"))
    assert recall_at_k(big, similar_users(x, k=8, method="exact")) >= 0.9
    np.testing.assert_array_equal(
        similar_users(x, k=8, method="ivf", seed=3), similar_users(x, k=8, method="ivf", seed=3)
    )


def test_input_is_not_mutated_and_thread_setting_restored() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((100, 8)).astype(np.float32) * 5
    before = x.copy()
    threads = faiss.omp_get_max_threads()
    for method in ("exact", "hnsw", "ivf"):
        similar_users(x, k=5, method=method)
    assert x.tobytes() == before.tobytes()
    assert faiss.omp_get_max_threads() == threads
    # float64 input works and gives the same neighbours.
    np.testing.assert_array_equal(similar_users(x.astype(np.float64), k=5), similar_users(x, k=5))


def test_errors() -> None:
    x = np.random.default_rng(5).standard_normal((10, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="only 10 users: use k <= 9"):
        similar_users(x, k=10)
    with pytest.raises(ValueError, match="k must be"):
        similar_users(x, k=0)
    with pytest.raises(ValueError, match="unknown retrieval method"):
        similar_users(x, k=3, method="annoy")
    with pytest.raises(ValueError, match="2-D"):
        similar_users(x[0], k=3)
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        similar_users(x, k=3)
    assert similar_users(x[:2] * 0 + 1, k=1).tolist() == [[1], [0]]


def test_recall_at_k_values() -> None:
    exact = np.array([[1, 3], [0, 2], [0, 1]])
    approx = np.array([[3, 2], [2, 0], [-1, 2]])
    assert recall_at_k(approx, exact) == 0.5  # 1 + 2 + 0 of 6
    assert recall_at_k(exact[:, ::-1], exact) == 1.0
    with pytest.raises(ValueError, match="row counts"):
        recall_at_k(approx[:2], exact)


SHARDED = """
import sys
import numpy as np
from llmesr.parallel import init_distributed
from llmesr.semantic.retrieval import similar_users

dist = init_distributed()
x = np.load(sys.argv[1])
out = {m: similar_users(x, k=12, method=m, exact_max=100, dist=dist) for m in ("exact", "ivf", "auto")}
if dist.is_main:
    np.savez(sys.argv[2], **out)
dist.close()
"""


def test_two_gloo_ranks_retrieve_exactly_as_one_process(tmp_path):
    """Under ``torchrun`` each rank searches its share of the users (exact search) or of the IVF
    lists; every rank receives the whole array, equal to one process's."""
    rng = np.random.default_rng(4)
    topics = rng.normal(size=(6, 16))
    x = (topics[rng.integers(0, 6, 400)] + 0.3 * rng.normal(size=(400, 16))).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "sharded.py").write_text(SHARDED)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = [str(tmp_path / "sharded.py"), str(tmp_path / "x.npy"), str(tmp_path / "two.npz")]
    done = subprocess.run([*launcher, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    two = np.load(tmp_path / "two.npz")
    for method in ("exact", "ivf", "auto"):
        np.testing.assert_array_equal(two[method], similar_users(x, k=12, method=method, exact_max=100))
    assert recall_at_k(two["ivf"], two["exact"]) > 0.9
