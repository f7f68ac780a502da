"""Pre-LayerNorm Transformer encoder shared by SASRec (causal) and BERT4Rec (bidirectional)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def attention_mask(mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """(B, 1, L, L) boolean: which keys each query may attend to.

    Padding keys are hidden; with ``causal`` so are later positions. Every query may always see
    itself, so padding rows never attend to nothing (which would give NaN).
    """
    length = mask.shape[1]
    eye = torch.eye(length, dtype=torch.bool, device=mask.device)
    allowed = mask[:, None, None, :]
    if causal:
        allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    return allowed | eye


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, attn_dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden_size {hidden} is not divisible by num_heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.attn_dropout = attn_dropout

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, length, h = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.attn_dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(b, length, h))


class TransformerBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, inner: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden)
        self.attn = SelfAttention(hidden, heads, attn_dropout)
        self.ln2 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(), nn.Linear(inner, hidden))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), allowed))
        return x + self.drop(self.ffn(self.ln2(x)))


class TransformerEncoder(nn.Module):
    """Embedded sequence (B, L, h) + padding mask (B, L) -> hidden states (B, L, h)."""

    def __init__(
        self,
        hidden: int,
        layers: int,
        heads: int,
        inner: int,
        dropout: float,
        attn_dropout: float,
        causal: bool,
    ) -> None:
        super().__init__()
        self.causal = causal
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden, heads, inner, dropout, attn_dropout) for _ in range(layers)
        )
        self.final_ln = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        allowed = attention_mask(mask, self.causal)
        for block in self.blocks:
            x = block(x, allowed) * mask.unsqueeze(-1)
        return self.final_ln(x)
