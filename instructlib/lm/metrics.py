"""Chapter 01: cross-entropy, perplexity and bits per token: how language models are scored.

All logarithms are natural (nats) unless the name says bits. For a model that assigns the
reference tokens probabilities p_1..p_N:
    cross-entropy H = -(1/N) sum_i log p_i,    perplexity = exp(H),    bits/token = H / ln 2.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities over the last dimension, computed stably with log-sum-exp."""
    return logits - torch.logsumexp(logits, dim=-1, keepdim=True)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean negative log-likelihood (nats) of ``targets`` (shape ``(...)``) under ``logits`` (``(..., V)``);
    positions whose target is ``ignore_index`` do not count (same as ``F.cross_entropy``)."""
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} need shape targets + (V,), targets are {tuple(targets.shape)}")
    mask = targets != ignore_index
    logp = log_softmax(logits)
    picked = logp.gather(-1, targets.where(mask, 0).unsqueeze(-1)).squeeze(-1)
    return -picked[mask].mean()


def cross_entropy_from_probs(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood (nats) of ``targets`` when the model gives probabilities ``probs``."""
    return -probs.gather(-1, targets.unsqueeze(-1)).log().mean()


def perplexity_from_loss(loss: float) -> float:
    """Perplexity = exp(cross-entropy in nats): the effective number of equally likely choices."""
    try:
        return math.exp(float(loss))
    except OverflowError:
        return math.inf


def bits_per_token(loss: float) -> float:
    """Convert a cross-entropy from nats to bits (divide by ln 2)."""
    return float(loss) / math.log(2)


def perplexity_from_logprobs(logprobs: Iterable[float]) -> float:
    """Perplexity of a sequence from its per-token natural log-probabilities."""
    values = list(logprobs)
    if not values:
        raise ValueError("perplexity of an empty sequence is undefined")
    if any(v == -math.inf for v in values):
        return math.inf
    return perplexity_from_loss(-sum(values) / len(values))


IGNORE_INDEX = -100  # label value the cross-entropy skips (torch and transformers convention)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy: logits at t (B, T, V) are scored against labels at t+1 (B, T).

    Positions labelled ``IGNORE_INDEX`` (padding, instruction prompts) do not count. ``reduction``
    is "mean" over counted tokens or "sum" (the SFT loop divides by the global count itself).
    """
    shifted_logits = logits[:, :-1, :]  # the last position has nothing left to predict
    targets = labels[:, 1:]             # the first token has no context to be predicted from
    return torch.nn.functional.cross_entropy(shifted_logits.reshape(-1, logits.size(-1)).float(),
                                             targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction=reduction)
