"""Speed of our step-by-step attention against torch's fused SDPA, measured in one run.

    python benchmarks/attention.py            # default sizes, prints a table with the ratio
    python benchmarks/attention.py --quick    # small sizes, a few seconds

Both functions see the same inputs on the same device; each time is the median of
``torch.utils.benchmark`` blocks after a warmup. Ratio = ours / torch (above 1: torch is faster).
"""
from __future__ import annotations

import argparse
from typing import Sequence

import torch
import torch.nn.functional as F
from torch.utils import benchmark

from instructlib.nn.attention import scaled_dot_product_attention

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


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: print the table for the chosen sizes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    rows = benchmark_rows(QUICK_SIZES if args.quick else DEFAULT_SIZES, device=args.device)
    print(f"device={args.device}, torch {torch.__version__}, threads={torch.get_num_threads()}")
    print(format_table(rows))


if __name__ == "__main__":
    main()
