"""Chapter 02: scaled dot-product attention and multi-head self-attention, written out step by step.

Argument conventions follow ``torch.nn.functional.scaled_dot_product_attention``:
a boolean ``attn_mask`` is True where a query MAY attend to a key, a float mask is added to the
scores, masks broadcast against ``(..., T_q, T_k)``, and ``is_causal`` keeps the lower triangle
aligned at the top-left corner (query ``i`` sees keys ``0..i``), as torch does when ``T_q != T_k``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def causal_mask(t_q: int, t_k: Optional[int] = None, device: Optional[torch.device] = None) -> Tensor:
    """Boolean (t_q, t_k) mask, True on and below the diagonal (query i may see keys 0..i)."""
    t_k = t_q if t_k is None else t_k
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril()


def attention_scores(q: Tensor, k: Tensor, attn_mask: Optional[Tensor] = None,
                     is_causal: bool = False, scale: Optional[float] = None) -> Tensor:
    """Masked, scaled scores ``q @ k^T * scale`` (default scale 1/sqrt(d)), shape (..., T_q, T_k)."""
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k need the same head size, got {q.shape[-1]} and {k.shape[-1]}")
    if is_causal and attn_mask is not None:
        raise ValueError("pass either attn_mask or is_causal=True, not both (as in torch)")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale
    t_q, t_k = q.shape[-2], k.shape[-2]
    if is_causal:
        attn_mask = causal_mask(t_q, t_k, device=q.device)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask.to(scores.dtype)
    return scores


def attention_weights(q: Tensor, k: Tensor, attn_mask: Optional[Tensor] = None,
                      is_causal: bool = False, scale: Optional[float] = None) -> Tensor:
    """Attention probabilities softmax(q k^T / sqrt(d) + mask) of shape (..., T_q, T_k).

    A query whose keys are all masked gets all-zero weights (hence a zero output), like torch's
    "safe softmax" since 2.5, instead of the NaNs a plain softmax over only -inf gives.
    """
    scores = attention_scores(q, k, attn_mask, is_causal, scale)
    fully_masked = torch.isneginf(scores).all(dim=-1, keepdim=True)
    scores = scores.masked_fill(fully_masked, 0.0)  # keeps gradients finite
    return torch.softmax(scores, dim=-1).masked_fill(fully_masked, 0.0)


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Optional[Tensor] = None,
                                 is_causal: bool = False, dropout_p: float = 0.0,
                                 scale: Optional[float] = None) -> Tensor:
    """softmax(q k^T / sqrt(d) + mask) @ v, same semantics as torch's F.scaled_dot_product_attention."""
    weights = attention_weights(q, k, attn_mask, is_causal, scale)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention (batch_first) with separate q/k/v/out projections."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.dropout = float(dropout)
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, T, C) -> (B, H, T, D) with C = H * D."""
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)

    def merge_heads(self, x: Tensor) -> Tensor:
        """(B, H, T, D) -> (B, T, C), the inverse of split_heads."""
        b, _, t, _ = x.shape
        return x.transpose(1, 2).contiguous().view(b, t, self.d_model)

    def forward(self, x: Tensor, attn_mask: Optional[Tensor] = None, is_causal: bool = False,
                need_weights: bool = False):
        """Self-attention over x (B, T, C); returns (B, T, C), plus the (B, H, T, T) weights
        (before dropout) if ``need_weights``. Masks follow scaled_dot_product_attention: True = attend."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"expected x of shape (B, T, {self.d_model}), got {tuple(x.shape)}")
        q, k, v = (self.split_heads(p(x)) for p in (self.q_proj, self.k_proj, self.v_proj))
        weights = attention_weights(q, k, attn_mask, is_causal)
        dropped = F.dropout(weights, p=self.dropout, training=self.training)
        out = self.out_proj(self.merge_heads(dropped @ v))
        return (out, weights) if need_weights else out
