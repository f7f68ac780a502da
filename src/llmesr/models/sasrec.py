"""SASRec (Kang & McAuley, ICDM 2018): a causal self-attention encoder over the item history.

Every position predicts the next item. The attention is causal by default; ``causal=False``
reproduces the LLM-ESR authors' code, whose causal mask is commented out (each training position
can then see its own target), and exists only for parity runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmesr.models.base import BackboneConfig, SequentialRecommender
from llmesr.models.transformer import TransformerEncoder


@dataclass
class SASRecConfig(BackboneConfig):
    num_layers: int = 2
    num_heads: int = 2
    inner_size: int = 256
    attn_dropout: float = 0.5
    causal: bool = True


class SASRec(SequentialRecommender):
    config: SASRecConfig
    display_name = "SASRec"

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__(config)
        self.encoder = TransformerEncoder(
            config.hidden_size,
            config.num_layers,
            config.num_heads,
            config.inner_size,
            config.dropout,
            config.attn_dropout,
            causal=config.causal,
        )
        self.init_weights()

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, mask)
