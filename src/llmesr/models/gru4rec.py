"""GRU4Rec (Hidasi et al., ICLR 2016) in its sequential-recommendation form.

As in RecBole and the LLM-ESR authors' code, a GRU reads the item embeddings of a user's history
and every position predicts the next item with the shared losses, rather than the original
session-parallel mini-batches with TOP1/BPR; ``loss=bce`` is closest to the original pairwise loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from llmesr.models.base import BackboneConfig, SequentialRecommender
from llmesr.models.transformer import Dropout


@dataclass
class GRU4RecConfig(BackboneConfig):
    num_layers: int = 1
    dropout: float = 0.3


class GRUEncoder(nn.Module):
    """Embedded sequence + mask -> hidden states, skipping the left padding entirely.

    Running a GRU over leading pad columns would change its state (biases still act), so the
    output would depend on how much a batch is padded. Rows are shifted to right padding and packed.
    """

    def __init__(self, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True, bias=True)
        self.proj = nn.Linear(hidden, hidden)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, length, h = x.shape
        lengths = mask.sum(1)
        pad = length - lengths
        cols = torch.arange(length, device=x.device).unsqueeze(0)
        to_right = (cols + pad.unsqueeze(1)).clamp(max=length - 1)
        right = x.gather(1, to_right.unsqueeze(-1).expand(-1, -1, h))
        packed = pack_padded_sequence(
            right, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=length)
        to_left = (cols - pad.unsqueeze(1)).clamp(min=0)
        left = out.gather(1, to_left.unsqueeze(-1).expand(-1, -1, h)) * mask.unsqueeze(-1)
        return self.proj(self.drop(left))


class GRU4Rec(SequentialRecommender):
    config: GRU4RecConfig
    display_name = "GRU4Rec"
    uses_positions = False  # a recurrent encoder already knows the order

    def __init__(self, config: GRU4RecConfig) -> None:
        super().__init__(config)
        self.encoder = GRUEncoder(config.hidden_size, config.num_layers, config.dropout)
        self.init_weights()
        # RNN weights keep PyTorch's uniform init: the small normal init slows GRU training.
        self.encoder.gru.reset_parameters()

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, mask)
