"""Chapter 02: how fast is the readable attention? Ours against torch's fused SDPA, timed in one run.

Both functions see the same inputs on the same device; each time is the median of
``torch.utils.benchmark`` blocks after a warmup. Ratio = ours / torch (above 1: torch is faster).
Shipped inside the package so notebook 02 runs offline from a plain ``pip install``;
``benchmarks/attention.py`` is the command-line entry point.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch.utils import benchmark

from .attention import scaled_dot_product_attention

DEFAULT_SIZES = [(1, 4, 128, 64), (4, 8, 256, 64), (2, 8, 1024, 64)]  # (B, H, T, D)
QUICK_SIZES = [(1, 4, 64, 32), (2, 4, 256, 32)]


def _median_seconds(fn, q, k, v, is_causal: bool, min_run_time: float) -> float:
    fn(q, k, v, is_causal=is_causal)  # warmup
    timer = benchmark.Timer("fn(q, k, v, is_causal=c)",
                            globals={"fn": fn, "q": q, "k": k, "v": v, "c": is_causal})
    return timer.blocked_autorange(min_run_time=min_run_time).median


def benchmark_rows(sizes: Sequence[tuple[int, int, int, int]] = DEFAULT_SIZES,
                   device: str = "cpu", min_run_time: float = 0.3) -> list[dict]:
    """Time ours vs torch SDPA for each (B, H, T, D) size, causal and not; one dict per row."""
    rows = []
    for b, h, t, d in sizes:
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(b, h, t, d, generator=g).to(device) for _ in range(3))
        for is_causal in (False, True):
            with torch.inference_mode():
                ours = _median_seconds(scaled_dot_product_attention, q, k, v, is_causal, min_run_time)
                ref = _median_seconds(F.scaled_dot_product_attention, q, k, v, is_causal, min_run_time)
            rows.append({"B": b, "H": h, "T": t, "D": d, "causal": is_causal,
                         "ours_ms": ours * 1e3, "torch_ms": ref * 1e3, "ratio": ours / ref})
    return rows


def format_table(rows: list[dict]) -> str:
    """Rows from benchmark_rows as a Markdown table."""
    lines = ["| B | H | T | D | causal | ours (ms) | torch SDPA (ms) | ours / torch |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['B']} | {r['H']} | {r['T']} | {r['D']} | {r['causal']} | {r['ours_ms']:.3f} "
                     f"| {r['torch_ms']:.3f} | {r['ratio']:.2f}x |")
    return "\n".join(lines)
