"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional Transformer trained by masked-item prediction.

Training masks each real position with probability ``mask_prob`` (at least one per row) and predicts
the masked items; at inference a mask token is appended after the history and its prediction ranks
the next item. The encoder is the same Transformer as SASRec's, without the causal mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from llmesr.data.sequences import Sequences
from llmesr.models.base import BackboneConfig, SequentialRecommender
from llmesr.models.transformer import TransformerEncoder


@dataclass
class BERT4RecConfig(BackboneConfig):
    num_layers: int = 2
    num_heads: int = 2
    inner_size: int = 256
    attn_dropout: float = 0.2
    dropout: float = 0.2
    mask_prob: float = 0.6
    loss: str = "ce"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.mask_prob <= 1.0:
            raise ValueError("mask_prob must be in (0, 1]")


def mask_items(
    seq: torch.Tensor, mask_prob: float, mask_token: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace real items by ``mask_token`` with probability ``mask_prob``; every non-empty row gets at
    least one mask (its last item when the draw chose none). Returns (inputs, labels), labels 0
    where nothing is predicted."""
    real = seq > 0
    chosen = (torch.rand(seq.shape, generator=generator).to(seq.device) < mask_prob) & real
    none = ~chosen.any(1) & real.any(1)
    chosen[none, -1] = True  # left padding: the last column is the most recent real item
    inputs = torch.where(chosen, torch.full_like(seq, mask_token), seq)
    labels = torch.where(chosen, seq, torch.zeros_like(seq))
    return inputs, labels


class BERT4Rec(SequentialRecommender):
    config: BERT4RecConfig
    display_name = "BERT4Rec"
    extra_item_rows = 1  # the mask token, never scored as an answer
    bidirectional = True
    user_from_training_pass = False  # the masked training input hides items

    def __init__(self, config: BERT4RecConfig) -> None:
        super().__init__(config)
        self.mask_token = config.n_items + 1
        h = config.hidden_size
        self.encoder = TransformerEncoder(
            h,
            config.num_layers,
            config.num_heads,
            config.inner_size,
            config.dropout,
            config.attn_dropout,
            causal=False,
        )
        # The original output head: a dense + GELU + LayerNorm transform and a per-item bias.
        self.head = nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.LayerNorm(h))
        self.out_bias = nn.Parameter(torch.zeros(config.n_items + 1))
        self.init_weights()

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, mask)

    def output(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden)

    def item_bias(self) -> torch.Tensor:
        return self.out_bias

    def train_input(self, train: Sequences, rows: np.ndarray) -> torch.Tensor:
        return train.pad_left(rows, self.config.max_len)

    def eval_input(self, history: Sequences, rows: np.ndarray) -> torch.Tensor:
        seq = history.pad_left(rows, self.config.max_len - 1, extra=1)
        seq[:, -1] = self.mask_token
        return seq

    def user_input(self, batch: torch.Tensor) -> torch.Tensor:
        """The unmasked training prefix + the mask token: ``eval_input`` of the training history (the
        batch holds its last ``max_len`` items; the mask token takes the last slot)."""
        token = torch.full_like(batch[:, :1], self.mask_token)
        return torch.cat([batch[:, -(self.config.max_len - 1) :], token], dim=1)

    def objective(
        self,
        model: SequentialRecommender,
        batch: torch.Tensor,
        generator: torch.Generator | None = None,
        want_user: bool = False,
        hidden: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Masked-item prediction: ``model`` predicts the masked items of the batch. Its input hides
        items, so the users, when wanted, are encoded from :meth:`user_input` in a second pass."""
        if hidden is not None:
            raise ValueError("masked-item training encodes its own masked input; it takes no states")
        inputs, labels = mask_items(batch, self.config.mask_prob, self.mask_token, generator)
        trained = labels > 0
        queries = model.output(model.hidden_states(inputs)[trained])
        loss = model.loss_at(queries, labels[trained], batch, trained.nonzero()[:, 0], generator)
        return loss, model.user_vectors(self.user_input(batch)) if want_user else None
