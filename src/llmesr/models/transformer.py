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


def fast_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout. On CPU the mask comes from ``torch.rand``: PyTorch's ``bernoulli_`` (behind
    ``nn.Dropout`` and SDPA's dropout) is about 3x slower there and was the largest single cost of
    a training step (benchmarks/bench_core.py). On GPU the fused kernel is used."""
    if not training or p == 0.0:
        return x
    if x.is_cuda:
        return F.dropout(x, p, True)
    keep = torch.rand(x.shape, device=x.device) >= p
    return x * keep * (1.0 / (1.0 - p))


class Dropout(nn.Module):
    """Drop-in for ``nn.Dropout`` using :func:`fast_dropout`."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor, dropout: float, training: bool
) -> torch.Tensor:
    """Scaled dot-product attention with dropout on the weights. Without dropout (or on GPU) this
    is SDPA; on CPU with dropout the weights are computed explicitly so that the mask can be drawn
    by :func:`fast_dropout` (SDPA falls back to the same explicit path there anyway)."""
    if not training or dropout == 0.0 or q.is_cuda:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=dropout if training else 0.0
        )
    scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    return fast_dropout(weights, dropout, True) @ v


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
        y = attend(q, k, v, allowed, self.attn_dropout, self.training)
        return self.out(y.transpose(1, 2).reshape(b, length, h))


class TransformerBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, inner: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden)
        self.attn = SelfAttention(hidden, heads, attn_dropout)
        self.ln2 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(), nn.Linear(inner, hidden))
        self.drop = Dropout(dropout)

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
