"""PCA projection of item embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from llmesr.semantic.pca import pca_project

CROSS = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]])


def test_hand_computed_projection() -> None:
    # Mean (5, 5); the x axis carries variance 2, the y axis 0.5: the projection is the centred data.
    out = pca_project(CROSS + 5.0, 2)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, CROSS, atol=1e-6)
    # Rotated by 30 degrees: components are the rotated axes, each with its largest coefficient
    # positive, so the projection is unchanged.
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    rotated = CROSS @ np.array([[c, s], [-s, c]])
    np.testing.assert_allclose(pca_project(rotated, 2), CROSS, atol=1e-6)
    np.testing.assert_allclose(pca_project(rotated, 1), CROSS[:, :1], atol=1e-6)


def test_matches_covariance_eigendecomposition() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 6)) @ rng.standard_normal((6, 6)) + 3.0
    evals, evecs = np.linalg.eigh(np.cov(x, rowvar=False))
    order = np.argsort(evals)[::-1][:4]
    evecs = evecs[:, order]
    lead = np.abs(evecs).argmax(axis=0)
    evecs = evecs * np.sign(evecs[lead, np.arange(4)])  # same sign convention
    expected = (x - x.mean(axis=0)) @ evecs
    out = pca_project(x.astype(np.float32), 4)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    # Column variances are the top eigenvalues, in decreasing order; columns are uncorrelated.
    np.testing.assert_allclose(out.var(axis=0, ddof=1), evals[order], rtol=1e-4)
    assert (np.diff(out.var(axis=0)) < 0).all()
    cov = np.cov(out, rowvar=False)
    np.testing.assert_allclose(cov - np.diag(np.diag(cov)), 0.0, atol=1e-3)


def test_deterministic_and_sign_convention() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 10)).astype(np.float32)
    a, b = pca_project(x, 5), pca_project(x.copy(), 5)
    assert a.tobytes() == b.tobytes()
    # Row order does not change the fitted components, so each row's projection is the same.
    perm = rng.permutation(50)
    np.testing.assert_allclose(pca_project(x[perm], 5), a[perm], atol=1e-5)


def test_target_std_scales_uniformly() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((30, 8))
    plain = pca_project(x, 3)
    scaled = pca_project(x, 3, target_std=0.02)
    assert scaled.std() == pytest.approx(0.02, rel=1e-5)
    np.testing.assert_allclose(scaled / plain, np.full_like(plain, 0.02 / plain.std()), rtol=1e-4)


@pytest.mark.parametrize(
    ("shape", "dim", "kwargs", "message"),
    [
        ((5, 3), 4, {}, "between 1 and min"),
        ((3, 8), 4, {}, r"= 3, got 4"),
        ((5, 3), 0, {}, "between 1 and min"),
        ((6,), 1, {}, "2-D"),
        ((5, 3), 2, {"target_std": 0.0}, "target_std"),
    ],
)
def test_bad_arguments(shape: tuple[int, ...], dim: int, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pca_project(np.ones(shape), dim, **kwargs)


def test_rejects_nan() -> None:
    x = np.ones((4, 3))
    x[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pca_project(x, 2)
