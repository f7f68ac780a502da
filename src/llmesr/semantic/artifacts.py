"""The semantic step's outputs as one typed object, checked once against the dataset and model.

Models, training and serving read these four tables by attribute, never by string key, so a
misspelt table is an ``AttributeError`` at the line that makes it instead of a ``KeyError`` deep in
a training run.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SemanticArtifacts:
    item_embeddings: np.ndarray  # (N + 1, d) encoded item prompts; row 0 (padding) zeros
    item_pca: np.ndarray  # (N + 1, h) PCA of the item rows to the model width; row 0 zeros
    user_embeddings: np.ndarray  # (U, d) encoded user prompts (training prefix only)
    similar_users: np.ndarray  # (U, K) most similar other users by cosine, best first

    @staticmethod
    def files() -> tuple[str, ...]:
        """The ``.npy`` file of each table in a semantic folder."""
        return tuple(f"{f.name}.npy" for f in fields(SemanticArtifacts))

    @property
    def semantic_dim(self) -> int:
        return int(self.item_embeddings.shape[1])

    def check(self, folder: Path, n_items: int, n_users: int, width: int, neighbours: int) -> None:
        """Refuse tables that cannot belong to this dataset and model: wrong row counts or widths,
        NaN/Inf or all-zero vectors, neighbour lists out of range. ``ValueError`` naming the file."""
        expected = {
            "item_embeddings": (n_items + 1, None),
            "item_pca": (n_items + 1, width),
            "user_embeddings": (n_users, None),
            "similar_users": (n_users, None),
        }
        for name, (rows, cols) in expected.items():
            a = getattr(self, name)
            where = Path(folder) / f"{name}.npy"
            kinds = "iu" if name == "similar_users" else "f"
            if a.dtype.kind not in kinds:
                want = "integer user ids" if name == "similar_users" else "floating-point vectors"
                raise ValueError(f"{where}: dtype {a.dtype}, expected {want}")
            if a.ndim != 2 or a.shape[0] != rows or (cols is not None and a.shape[1] != cols):
                want = f"({rows}, {cols if cols is not None else 'd'})"
                raise ValueError(f"{where}: shape {a.shape}, expected {want} for this dataset and model")
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise ValueError(f"{where}: contains NaN or Inf")
            real = a[1:] if name.startswith("item") else a  # item row 0 is padding
            if a.dtype.kind == "f" and real.size and not real.any():
                raise ValueError(f"{where}: every vector is zero (an unfinished or blank export?)")
        sim, where = self.similar_users, Path(folder) / "similar_users.npy"
        if sim.shape[1] < neighbours:
            raise ValueError(f"{where}: {sim.shape[1]} neighbours per user, {neighbours} needed")
        if sim.size and (sim.min() < 0 or sim.max() >= n_users):
            raise ValueError(f"{where}: user ids outside 0..{n_users - 1}")
