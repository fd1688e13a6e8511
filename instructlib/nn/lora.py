"""Chapter 05: LoRA from scratch — a frozen linear layer plus a trainable low-rank update.

``y = W x + b + (alpha / r) * B (A dropout(x))`` with A (r, in) random and B (out, r) zero at the
start, so the adapted model begins exactly equal to the base model. Only A and B train:
``r * (in + out)`` numbers per layer instead of ``in * out``. ``merge`` folds ``(alpha / r) B A`` into
W (no extra cost at inference); ``unmerge`` takes it out again. Same parameterisation, initialisation
and names (``lora_A``, ``lora_B``) as peft, so weights can be copied across and outputs compared.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _conv1d_type():
    """transformers' GPT-2 ``Conv1D`` (a linear layer storing its weight as (in, out)), if available."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is a dependency
        return ()
    return Conv1D


class LoRALinear(nn.Module):
    """Wrap ``base`` (nn.Linear or transformers Conv1D), freeze it, add a rank-``r`` update."""

    def __init__(self, base: nn.Module, r: int = 8, alpha: float = 16.0, dropout: float = 0.0):
        super().__init__()
        if r <= 0:
            raise ValueError(f"LoRA rank r must be positive, got {r}")
        self.fan_in_fan_out = isinstance(base, _conv1d_type())  # weight stored transposed (in, out)
        if not (isinstance(base, nn.Linear) or self.fan_in_fan_out):
            raise TypeError(f"LoRALinear wraps nn.Linear or Conv1D, got {type(base).__name__}")
        w = base.weight
        in_f, out_f = (w.shape[0], w.shape[1]) if self.fan_in_fan_out else (w.shape[1], w.shape[0])
        self.base = base.requires_grad_(False)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.lora_A = nn.Parameter(torch.empty(r, in_f, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(out_f, r, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # what nn.Linear (and peft) use
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def delta_weight(self) -> Tensor:
        """The update ``(alpha / r) B A`` in the base weight's layout."""
        delta = (self.lora_B @ self.lora_A) * self.scaling
        return delta.T if self.fan_in_fan_out else delta

    def forward(self, x: Tensor) -> Tensor:
        """Base output plus the scaled low-rank path (skipped once merged)."""
        y = self.base(x)
        if self.merged:
            return y
        return y + F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight (inference then costs one matmul)."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract the update again (exact up to float rounding)."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, fan_in_fan_out={self.fan_in_fan_out}"


def _matches(name: str, targets: Sequence[str]) -> bool:
    """peft's rule for a list of names: the module's full name equals a target or ends with '.target'."""
    return any(name == t or name.endswith("." + t) for t in targets)


def inject_lora(model: nn.Module, targets: Iterable[str] = ("q_proj", "v_proj"), r: int = 8,
                alpha: float = 16.0, dropout: float = 0.0) -> list[str]:
    """Replace the target layers by LoRALinear, freeze everything else; return the replaced names."""
    targets = tuple(targets)
    names = [n for n, m in model.named_modules()
             if _matches(n, targets) and isinstance(m, (nn.Linear, _conv1d_type()))]
    if not names:
        raise ValueError(f"no nn.Linear/Conv1D module of {type(model).__name__} matches {targets}")
    model.requires_grad_(False)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(getattr(parent, child), r=r, alpha=alpha, dropout=dropout))
    return names


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    """All LoRALinear modules of ``model``."""
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every LoRA update into its base weight (in place)."""
    for layer in lora_layers(model):
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Undo ``merge_lora`` (in place)."""
    for layer in lora_layers(model):
        layer.unmerge()
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, shared tensors counted once."""
    params = list(model.parameters())  # parameters() yields a shared (tied) tensor once
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
