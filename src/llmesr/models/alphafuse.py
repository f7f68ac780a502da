"""AlphaFuse (Hu et al., "AlphaFuse: Learn ID Embeddings for Sequential Recommendation in Null
Space of Language Embeddings", SIGIR 2025; code github.com/Hugo-Chinn/AlphaFuse) on any backbone.

The method: item vectors are language embeddings whose *semantic null space*, the directions along
which the catalogue's text embeddings hardly vary, is handed to learned ID embeddings.

1. The frozen item text embeddings ``E`` (rows 1..N of the semantic step's ``item_embeddings``) are
   mean-centred over the items, ``X = E - mean``, and their covariance ``C = X^T X / (N - 1)``
   (``np.cov``'s convention, as the authors) is decomposed, ``C = U S U^T`` (its SVD: ``C`` is
   symmetric positive semi-definite, so singular values and eigenvalues coincide).
2. Each item keeps the top ``hidden_size`` directions, whitened: coordinate ``k`` is
   ``X u_k / sqrt(S_k)``, each divided by the square root of its direction's eigenvalue (= the
   variance of the items along it). The projected items therefore have sample covariance exactly
   the identity on every kept direction (tests/models/test_alphafuse.py checks it against numpy).
3. The last ``null_dim`` coordinates (default ``hidden_size // 2``), those of the smallest
   eigenvalues, are the null space: each item adds a trainable ID vector there. The other
   coordinates stay the frozen text; there is no adapter. ``item = [text_1..h-n ; text_h-n+1..h + id]``
   is the backbone's item table, as input embeddings and as output vectors alike.

Only the ID part (``N x null_dim`` numbers) and the backbone's encoder train:
``trainable_parameters()`` reports the count (an ID table of the same backbone has ``N x hidden_size``).

Ours and the paper (or the authors' code):

* The text embeddings are the semantic step's encoder (MiniLM by default, 384 dimensions); the
  paper uses OpenAI's text-embedding-3 (1536 / 3072). A catalogue whose text has fewer dimensions
  than ``hidden_size`` is refused (no ``hidden_size`` directions to keep).
* A kept direction along which the items do not vary at all (numerically: eigenvalue below
  ``ZERO_VARIANCE`` times the largest; it happens when there are fewer items than ``hidden_size``)
  gets coordinate 0 rather than rounding noise divided by ~0; such directions must lie in the null
  space, where the ID part fills them, else the model is refused. The authors divide regardless.
* The null space is ``null_dim`` coordinates only (the authors can also take every eigenvalue under
  a threshold, ``null_thres``, which their DreamRec runs use). The null-space text coordinates are
  kept and the ID part added to them (the authors' default; their ``cover`` option zeroes them).
* ID init: ``null_init: zeros`` (the authors' Movies setting) or ``normal``, with the backbone's
  ``init_std``; the authors' ``normal`` is N(0, 1), the whitened coordinates' own scale.
* Row 0 is padding and stays zero (the authors keep a random padding vector at the last index).
  BERT4Rec's mask token is no item and has no text: its row is a trainable vector of its own.
* Training: the paper's SASRec has 1 block and 1 head, no sqrt(h) input scaling and N(0, 1)
  position embeddings, and is trained with InfoNCE (cosine similarity, temperature 0.07) over 64
  sampled negatives at lr 1e-4 (the README lists 1e-3 and 1e-2 per dataset). Here every method of a
  comparison trains the same backbone with the same loss and budget (default full-softmax ``ce``,
  lr 1e-3, 2 blocks, 2 heads in ``configs/alphafuse_sasrec_ce.yaml``): the backbone embeds the fused
  vectors as it embeds its own table (scaled by sqrt(h), its position embeddings added).
* Not built: the authors' DreamRec (diffusion) backbone, the item-frequency-weighted covariance
  (``item_frequency_flag``), and serving new items from their text (the frozen part would give one;
  the bundle refuses additions, as it does for every model but LLM-ESR).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmesr.data.sequences import Sequences
from llmesr.models.base import WrapperConfig
from llmesr.models.wrapper import BackboneBuilder, BackboneWrapper, ItemTable
from llmesr.semantic.artifacts import SemanticArtifacts

# A direction whose variance is below this share of the largest is numerically constant over the
# catalogue: float32 text vectors cannot tell its variance from rounding (~1e-14 relative).
ZERO_VARIANCE = 1e-10
NULL_INITS = ("zeros", "normal")


@dataclass
class AlphaFuseConfig(WrapperConfig):
    # ID coordinates: the last null_dim of hidden_size (the smallest-variance directions).
    null_dim: int | None = None  # None = hidden_size // 2
    null_init: str = "zeros"  # zeros | normal (std init_std)
    # Std of every whitened text coordinate (whitening makes it 1); None = init_std, the scale of the
    # backbone's own fresh item table, on which its input scaling and dot-product scores are tuned.
    text_std: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.null_dim is None:
            self.null_dim = self.hidden_size // 2
        if self.text_std is None:
            self.text_std = self.init_std
        if not self.text_std > 0:
            raise ValueError(f"text_std must be > 0, got {self.text_std}")
        if not 0 <= self.null_dim <= self.hidden_size:
            raise ValueError(f"null_dim must be in 0..hidden_size ({self.hidden_size}), got {self.null_dim}")
        if self.null_init not in NULL_INITS:
            raise ValueError(f"null_init must be one of {NULL_INITS}, got {self.null_init!r}")


def whitened_projection(embeddings: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The (n, width) whitened coordinates of ``embeddings`` (n items, d dims) on their top
    ``width`` principal directions, and the (width,) eigenvalues of those directions, largest first
    (0 for a direction of numerically zero variance, whose coordinate is then 0).

    ``C = X^T X / (n - 1)`` of the centred rows ``X``; ``C = U S U^T``; coordinate k is
    ``X u_k / sqrt(S_k)``, so the coordinates have sample covariance exactly I. In float64; each
    direction's sign is fixed (largest-magnitude entry positive), so one input gives one output.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    n, d = x.shape
    if d < width:
        raise ValueError(
            f"AlphaFuse keeps hidden_size = {width} directions of the item text embeddings, which have "
            f"only {d}: use a wider encoder or a smaller hidden_size"
        )
    if n < 2:
        raise ValueError(f"AlphaFuse needs at least 2 items to centre their text embeddings, got {n}")
    centred = x - x.mean(axis=0)
    directions, eigenvalues, _ = np.linalg.svd(centred.T @ centred / (n - 1), hermitian=True)
    directions, eigenvalues = directions[:, :width], eigenvalues[:width].copy()
    lead = np.abs(directions).argmax(axis=0)
    directions = directions * np.sign(directions[lead, np.arange(width)])
    eigenvalues[eigenvalues <= ZERO_VARIANCE * eigenvalues[0]] = 0.0
    scale = np.divide(1.0, np.sqrt(eigenvalues), out=np.zeros(width), where=eigenvalues > 0)
    return (centred @ directions) * scale, eigenvalues


class NullSpaceTable(ItemTable):
    """The fused item table: frozen whitened text coordinates (a buffer) plus a trainable ID part on
    the last ``null_dim`` of them; row 0 (padding) is zero by construction; rows after the items
    (BERT4Rec's mask token) are trainable vectors of their own."""

    def __init__(self, n_items: int, hidden: int, null_dim: int, ids: torch.Tensor, extra: torch.Tensor):
        super().__init__()
        self.frozen_dim = hidden - null_dim
        self.register_buffer("text", torch.zeros(n_items + 1, hidden))
        self.ids = nn.Parameter(ids)  # (n_items, null_dim): the ID parts of items 1..N
        self.extra = nn.Parameter(extra) if len(extra) else None

    @property
    def weight(self) -> torch.Tensor:
        ids = F.pad(self.ids, (self.frozen_dim, 0, 1, 0))  # zeros: the frozen coordinates, padding row
        table = self.text + ids.to(self.text.dtype)
        return table if self.extra is None else torch.cat([table, self.extra.to(table.dtype)])


class AlphaFuse(BackboneWrapper):
    config: AlphaFuseConfig
    display_name = "AlphaFuse"
    needs_semantic = True

    @classmethod
    def for_training(
        cls,
        config: AlphaFuseConfig,
        train: Sequences,
        artifacts: SemanticArtifacts | None,
        build_backbone: BackboneBuilder | None = None,
    ) -> AlphaFuse:
        return cls(config, artifacts.item_embeddings, build_backbone=build_backbone)

    def __init__(
        self,
        config: AlphaFuseConfig,
        text_embeddings: np.ndarray | None = None,
        *,
        build_backbone: BackboneBuilder | None = None,
    ) -> None:
        super().__init__(config, build_backbone)
        n, h = config.n_items, config.hidden_size
        ids = torch.zeros(n, config.null_dim)
        if config.null_init == "normal":
            nn.init.normal_(ids, std=config.init_std)
        extra = self.backbone.item_emb.weight.detach()[n + 1 :].clone()  # the backbone's own init
        self.backbone.item_emb = NullSpaceTable(n, h, config.null_dim, ids, extra)
        if text_embeddings is not None:
            self.set_text(text_embeddings)

    @torch.no_grad()
    def set_text(self, embeddings: np.ndarray) -> None:
        """Whiten the (N + 1, d) text table (row 0: padding, left out) into the frozen coordinates."""
        cfg = self.config
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or len(embeddings) != cfg.n_items + 1:
            raise ValueError(f"item text table has shape {embeddings.shape}, expected ({cfg.n_items + 1}, d)")
        coords, eigenvalues = whitened_projection(embeddings[1:], cfg.hidden_size)
        frozen = cfg.hidden_size - cfg.null_dim
        constant = int((eigenvalues[:frozen] == 0).sum())
        if constant:
            varying = int((eigenvalues > 0).sum())
            raise ValueError(
                f"the item text embeddings vary along only {varying} directions, fewer than the "
                f"{frozen} frozen coordinates (hidden_size - null_dim): raise null_dim or lower hidden_size"
            )
        text = torch.from_numpy(coords * cfg.text_std)
        self.backbone.item_emb.text[1:] = text.to(self.backbone.item_emb.text.dtype)
