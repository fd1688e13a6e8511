"""Chapter 02: transformer building blocks around attention: feed-forward, positions, a pre-LN block."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from instructlib.nn.attention import MultiHeadAttention


class FeedForward(nn.Module):
    """Position-wise MLP: Linear(d_model, d_ff) -> GELU -> Linear(d_ff, d_model) -> dropout."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, bias: bool = True,
                 approximate: str = "none"):
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff, bias=bias)
        self.act = nn.GELU(approximate=approximate)  # "tanh" is GPT-2's original gelu_new
        self.fc2 = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the MLP to every position of x (..., d_model) independently."""
        return self.dropout(self.fc2(self.act(self.fc1(x))))


def sinusoidal_table(max_len: int, d_model: int) -> Tensor:
    """(max_len, d_model) table: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(same angle)."""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    angles = pos * inv_freq  # (max_len, ceil(d/2))
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return table


def _check_length(t: int, max_len: int, name: str) -> None:
    if t > max_len:
        raise ValueError(f"{name}: sequence length {t} exceeds max_len={max_len}")


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sine/cosine positions (Vaswani et al. 2017), added to x (B, T, d_model)."""

    def __init__(self, d_model: int, max_len: int = 2048):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.register_buffer("pe", sinusoidal_table(max_len, d_model), persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x + PE[offset : offset + T]; ``offset`` is the position of x's first token."""
        t = x.shape[-2]
        _check_length(offset + t, self.max_len, "SinusoidalPositionalEncoding")
        return x + self.pe[offset: offset + t].to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """A trained vector per position (GPT-2 style), added to x (B, T, d_model)."""

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.emb = nn.Embedding(max_len, d_model)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x + E[offset : offset + T]; ``offset`` is the position of x's first token."""
        t = x.shape[-2]
        _check_length(offset + t, self.max_len, "LearnedPositionalEmbedding")
        return x + self.emb(torch.arange(offset, offset + t, device=x.device))


class TransformerBlock(nn.Module):
    """Pre-LN block: x + dropout(attn(ln1(x))), then x + ffn(ln2(x))."""

    attention_cls = MultiHeadAttention  # subclasses swap in a variant (e.g. with a KV cache)

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0, bias: bool = True,
                 eps: float = 1e-5, approximate: str = "none"):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model, eps=eps, bias=bias)
        self.attn = self.attention_cls(d_model, n_heads, dropout, bias)
        self.dropout = nn.Dropout(dropout)
        self.ln2 = nn.LayerNorm(d_model, eps=eps, bias=bias)
        self.ffn = FeedForward(d_model, d_ff, dropout, bias, approximate)

    def forward(self, x: Tensor, attn_mask: Optional[Tensor] = None, is_causal: bool = False) -> Tensor:
        """One block over x (B, T, d_model); masks follow scaled_dot_product_attention (True = attend)."""
        x = x + self.dropout(self.attn(self.ln1(x), attn_mask=attn_mask, is_causal=is_causal))
        return x + self.ffn(self.ln2(x))
