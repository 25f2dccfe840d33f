"""A Conformer stack (Gulati et al. 2020) over feature sequences (B, frames, dim), e.g. a vocoder pre-net.

Written by hand in plain torch: torchaudio's Conformer is off limits here (see DESIGN.md), and
transformers' conformer layers are tied to their models' configs and attention variants
(Gemma 3n's block is chunked, causal and logit-capped; w2v-BERT's needs relative-position
embeddings from its encoder), so none is a clean drop-in for a generic stack.

Block (macaron): ``x + FFN/2 -> x + MHSA -> x + Conv -> x + FFN/2 -> LayerNorm``. Two choices
differ from the paper, on purpose:
- no positional encoding: the depthwise convolutions give the order, and without absolute
  positions a chunk of a long file sees the same model wherever it starts;
- the convolution module normalises with LayerNorm, not BatchNorm (as w2v-BERT 2.0's conformer
  does): no dependence on batch statistics, so small GAN batches and eval behave the same.

Parameters per block (d = dim, f = ffn_dim, k = kernel_size, biases and norms included):
``4*d*f + 7*d**2 + d*k + 2*f + 22*d``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeedForward(nn.Module):
    """Pre-norm feed-forward: (B, T, d) -> (B, T, d) through a SiLU hidden layer of ffn_dim."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm, self.up, self.down = nn.LayerNorm(dim), nn.Linear(dim, ffn_dim), nn.Linear(ffn_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(self.dropout(F.silu(self.up(self.norm(x))))))


class ConvModule(nn.Module):
    """Pre-norm pointwise conv + GLU, depthwise conv (kernel_size, same length), norm, SiLU,
    pointwise conv: (B, T, d) -> (B, T, d)."""

    def __init__(self, dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.norm, self.depth_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.pointwise_in = nn.Conv1d(dim, 2 * dim, 1)
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.pointwise_out = nn.Conv1d(dim, dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.depthwise(F.glu(self.pointwise_in(self.norm(x).transpose(1, 2)), dim=1))
        h = F.silu(self.depth_norm(h.transpose(1, 2))).transpose(1, 2)
        return self.dropout(self.pointwise_out(h).transpose(1, 2))


class ConformerBlock(nn.Module):
    """One macaron Conformer block: (B, T, dim) -> (B, T, dim)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.ffn1, self.ffn2 = FeedForward(dim, ffn_dim, dropout), FeedForward(dim, ffn_dim, dropout)
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.attn_dropout = nn.Dropout(dropout)
        self.conv = ConvModule(dim, kernel_size, dropout)
        self.out_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ffn1(x)
        h = self.attn_norm(x)
        # need_weights=False lets torch use its fused scaled-dot-product kernels
        x = x + self.attn_dropout(self.attn(h, h, h, need_weights=False)[0])
        x = x + self.conv(x)
        return self.out_norm(x + 0.5 * self.ffn2(x))


class Conformer(nn.Module):
    """``layers`` Conformer blocks: (B, T, in_dim) -> (B, T, dim), with a linear input projection
    only when ``in_dim != dim``."""

    def __init__(self, in_dim: int, layers: int, dim: int, heads: int, ffn_dim: int, kernel_size: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, dim) if in_dim != dim else nn.Identity()
        self.blocks = nn.ModuleList(
            ConformerBlock(dim, heads, ffn_dim, kernel_size, dropout) for _ in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        for block in self.blocks:
            x = block(x)
        return x
