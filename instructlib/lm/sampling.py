"""Chapter 01: decoding rules that turn next-token logits into a token: greedy, temperature, top-k, top-p.

The single source of truth for sampling in the course: the n-gram model (chapter 01) and
TinyGPT (chapter 03) both call :func:`sample_next`. Filters work on the last dimension of a
tensor of any shape (``(V,)``, ``(B, V)``, ...) and set removed logits to ``-inf``; they apply
in the same order as transformers' ``generate``: temperature, then top-k, then top-p.
"""
from __future__ import annotations

from typing import Optional

import torch


def greedy_next(logits: torch.Tensor) -> torch.Tensor:
    """The most probable token id(s): argmax over the last dimension."""
    return logits.argmax(dim=-1)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide logits by ``temperature`` (>0): below 1 sharpens the distribution, above 1 flattens it."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (use greedy_next for T=0), got {temperature}")
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits (and any tied with the k-th), set the rest to -inf."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"top_k must be a positive integer, got {k!r}")
    if k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most probable tokens whose total probability
    reaches ``p`` (the top token always stays; tokens tied with the last kept one stay too)."""
    if not 0 < p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {p!r}")
    if p == 1:
        return logits
    sorted_logits, _ = torch.sort(logits, dim=-1, descending=True)
    sorted_probs = sorted_logits.softmax(dim=-1)
    # probability mass strictly above each token in the sorted order (exclusive cumulative sum)
    mass_above = sorted_probs.cumsum(dim=-1) - sorted_probs
    keep = mass_above < p
    keep[..., 0] = True
    # the smallest kept logit is the threshold; comparing logits keeps ties together
    threshold = sorted_logits.masked_fill(~keep, float("inf")).min(dim=-1, keepdim=True).values
    return logits.masked_fill(logits < threshold, float("-inf"))


def filter_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
) -> torch.Tensor:
    """Apply temperature, then top-k, then top-p (each optional): the distribution we sample from."""
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Draw one token id per row of ``logits`` (shape ``(..., V)``); ``temperature=0`` means greedy.

    ``generator`` (for reproducible draws) must live on the same device as ``logits``.
    """
    if temperature == 0:
        return greedy_next(logits)
    logits = filter_logits(logits.float(), temperature, top_k, top_p)
    probs = logits.softmax(dim=-1).reshape(-1, logits.size(-1))
    ids = torch.multinomial(probs, num_samples=1, generator=generator)
    return ids.reshape(logits.shape[:-1])
