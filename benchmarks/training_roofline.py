"""How close chapter 06's training step runs to this machine's arithmetic: the testbed's step against
matrix multiplications on the same threads, in one run.

Fine-tunes the course TinyGPT with the testbed's recipe (chapter 05's loop, length-grouped batches of 16)
for a few hundred steps on the testbed's own training data, counts the step's floating-point work (6
per matrix weight per real token, plus attention), and times the peer on the same thread count: a matrix
multiplication of the step's own largest shape (one batch's tokens through the MLP's first layer) and a
large square one. Prints the step's rate as a fraction of both, then what they imply for chapter 06's
grid from a cold cache: its time at the step's measured speed, and the floor were every operation of
the step as fast as that matmul.

    python benchmarks/training_roofline.py [--steps 200] [--threads 2] [--runs 44]
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

from instructlib.config import cpu_threads
from instructlib.data.collate import DataCollatorForInstructions
from instructlib.generate.wording_experiment import condition_wordings, course_testbed, recipe_config, training_data
from instructlib.models import load_model, load_tokenizer
from instructlib.train import train


def matmul_gflops(m: int, k: int, n: int, seconds: float = 2.0) -> float:
    """Best GFLOP/s of an (m x k) @ (k x n) float32 product over ``seconds`` of repeats."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        for _ in range(10):
            a @ b
        best = min(best, (time.perf_counter() - t0) / 10)
    return 2 * m * k * n / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps to time")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the testbed's runs use 2)")
    parser.add_argument("--runs", type=int, default=44,
                        help="chapter 06's runs: 2 sources x 7 wording counts x 3 seeds, + 2 probe runs")
    args = parser.parse_args()

    base, tokenizer = load_model("tinygpt"), load_tokenizer("tinygpt")
    c = base.config
    bed = course_testbed("cpu", max_len=c.block_size)
    data = training_data(tokenizer, bed, condition_wordings(bed.families, "human", None, 0))
    mean_len = sum(len(ex["input_ids"]) for ex in data) / len(data)
    # per real token, forward + backward: 6 x the weights of every matrix (blocks and LM head) + attention
    matrix_weights = 12 * c.n_layer * c.n_embd ** 2 + c.n_embd * c.vocab_size
    flops_per_token = 6 * matrix_weights + 12 * c.n_layer * c.n_embd * mean_len
    print(f"TinyGPT {c.n_layer} layers x {c.n_embd}, vocabulary {c.vocab_size}: {matrix_weights:,} matrix weights; "
          f"testbed examples of {mean_len:.1f} tokens on average; {flops_per_token / 1e6:.2f} MFLOP per token")

    config = recipe_config(args.steps, bed.batch, bed.lr, 0, threads=args.threads)
    result = train(copy.deepcopy(base), data, DataCollatorForInstructions(tokenizer), config)
    step_gflops = result.tokens_per_s * flops_per_token / 1e9
    with cpu_threads(args.threads):
        shaped = matmul_gflops(round(bed.batch * mean_len), c.n_embd, 4 * c.n_embd)
        square = matmul_gflops(1024, 1024, 1024)
    print(f"{'training step (testbed recipe)':<44}{result.tokens_per_s:>10,.0f} tokens/s {step_gflops:>7.1f} GFLOP/s")
    print(f"{f'matmul {round(bed.batch * mean_len)}x{c.n_embd} @ {c.n_embd}x{4 * c.n_embd}':<44}{'':>19}{shaped:>7.1f} GFLOP/s")
    print(f"{'matmul 1024x1024 @ 1024x1024':<44}{'':>19}{square:>7.1f} GFLOP/s")
    print(f"ratio step/matmul of its shape: {step_gflops / shaped:.2f}; step/square matmul: {step_gflops / square:.2f} "
          f"({args.threads} threads)")

    tokens = args.runs * bed.steps * bed.batch * mean_len
    print(f"chapter 06 from a cold cache: {args.runs} runs x {bed.steps} steps x {bed.batch} = {tokens / 1e6:.1f} M tokens; "
          f"{tokens / result.tokens_per_s / 60:.0f} min of training at the step's speed, "
          f"{tokens * flops_per_token / (max(shaped, square) * 1e9) / 60:.0f} min were the whole step as fast as "
          f"the faster matmul (15 min would need {tokens / (15 * 60 * result.tokens_per_s):.1f}x the step's speed)")


if __name__ == "__main__":
    main()
