"""Speed of our step-by-step attention against torch's fused SDPA, measured in one run.

    python benchmarks/attention.py            # default sizes, prints a table with the ratio
    python benchmarks/attention.py --quick    # small sizes, a few seconds

The measuring code lives in ``instructlib.nn.attention_benchmark`` (notebook 02 imports it from the
installed package, offline); this script is its command line. Ratio = ours / torch (above 1: torch is faster).
"""
from __future__ import annotations

import argparse

import torch

from instructlib.nn.attention_benchmark import DEFAULT_SIZES, QUICK_SIZES, benchmark_rows, format_table


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
