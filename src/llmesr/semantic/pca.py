"""PCA of the LLM item embeddings down to the recommender's width (initialises the ID table)."""

from __future__ import annotations

import numpy as np


def pca_project(item_emb: np.ndarray, dim: int, target_std: float | None = None) -> np.ndarray:
    """Project ``item_emb`` (n, d) onto its top-``dim`` principal components: float32 (n, dim).

    Fitted on exactly the rows given: pass real items only, since a padding row would shift the
    mean. Columns come in order of decreasing explained variance. Singular vectors are unique only
    up to sign, so each component is flipped to make its largest-magnitude coefficient positive:
    the same input then always gives the same output.

    ``target_std``: scale the whole output by one factor so that the standard deviation over all
    its entries equals it (e.g. an ``nn.Embedding`` init std). A single factor keeps the ratios of
    the components' variances, which is the information PCA carries.
    """
    x = np.asarray(item_emb, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"item_emb must be 2-D (n, d), got shape {x.shape}")
    n, d = x.shape
    if not 1 <= dim <= min(n, d):
        raise ValueError(f"PCA dim must be between 1 and min(n_items, emb_dim) = {min(n, d)}, got {dim}")
    if not np.isfinite(x).all():
        raise ValueError("item_emb contains NaN or Inf")
    if target_std is not None and not target_std > 0:
        raise ValueError(f"target_std must be positive, got {target_std}")

    centred = x - x.mean(axis=0)
    # Economy SVD in float64: centred = U S Vt, rows of Vt are the principal axes.
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:dim]
    lead = np.abs(components).argmax(axis=1)
    signs = np.sign(components[np.arange(dim), lead])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    proj = centred @ components.T
    if target_std is not None:
        std = proj.std()
        if std > 0:
            proj = proj * (target_std / std)
    return proj.astype(np.float32)
