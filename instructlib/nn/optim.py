"""Chapter 03: what both training loops share — AdamW with decoupled weight decay on matrices only,
the warmup-then-cosine learning-rate schedule, and the loss history of a run.

Chapter 03's pretraining loop and chapter 05's fine-tuning loop both import these, so neither
reaches into the other.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn


def make_optimizer(model: nn.Module, *, lr: float, weight_decay: float = 0.0,
                   betas: tuple[float, float] = (0.9, 0.999),
                   device: Optional[torch.device] = None) -> torch.optim.AdamW:
    """AdamW over trainable parameters; weight decay on matrices only; fused kernel on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    device = device or params[0].device
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=torch.device(device).type == "cuda")


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> float:
    """LR multiplier: linear warmup from 0, then cosine decay to ``min_lr_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class History:
    """Metrics of a run: one dict per logged optimizer step and one per evaluation."""

    train: list = field(default_factory=list)   # {"step", "loss", "lr", "tokens"}
    eval: list = field(default_factory=list)    # {"step", "val_loss"}

    def plot(self, ax=None, label: str = ""):
        """Training and validation loss against the step (matplotlib)."""
        import matplotlib.pyplot as plt

        ax = ax or plt.subplots(figsize=(6, 3.5))[1]
        ax.plot([r["step"] for r in self.train], [r["loss"] for r in self.train],
                alpha=0.6, label=f"{label} train".strip())
        if self.eval:
            ax.plot([r["step"] for r in self.eval], [r["val_loss"] for r in self.eval],
                    "o-", label=f"{label} validation".strip())
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss (nats / learned token)")
        ax.legend()
        return ax
