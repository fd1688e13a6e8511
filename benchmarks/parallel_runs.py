"""Cold-cache time of chapter 09's one-thread rule runs: one after another in this process, against
``prebuild_course_rules`` running them side by side in worker processes (one per core), in one run.

Both build the same runs (a shorter budget than the notebook's, so the script takes minutes) into their
own empty caches, sharing only the pretrained course model; the script checks that both wrote the same
weights, bit for bit, then prints both wall times and their ratio.

    python benchmarks/parallel_runs.py [--steps 200] [--runs 4] [--processes N]
"""
from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from instructlib.config import cache_dir, cpu_threads
from instructlib.evaluation.unseen_rules import course_rulebed, prebuild_course_rules, run_rules, train_rules
from instructlib.models import load_model, load_tokenizer
from instructlib.models.course import course_model_dir
from instructlib.train.experiment import processes_for


def fresh_cache(root: Path, shared: Path) -> Path:
    """An empty cache that sees only the course model and its tokenizer (linked from ``shared``)."""
    root.mkdir()
    for entry in shared.iterdir():
        if entry.name.startswith("tinygpt-"):
            (root / entry.name).symlink_to(entry)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps per run")
    parser.add_argument("--runs", type=int, default=4, help="runs to build (n = 16, 256, ... x seeds 0, 1)")
    parser.add_argument("--processes", type=int, default=None, help="workers (default: cores / threads per run)")
    args = parser.parse_args()

    base, tokenizer, key = load_model("tinygpt"), load_tokenizer("tinygpt"), course_model_dir().name
    bed = replace(course_rulebed(max_len=base.config.block_size), steps=args.steps)
    jobs = [(bed, n, seed) for n in (16, 256, 64, 1024) for seed in (0, 1)][: args.runs]
    processes = args.processes or processes_for(bed.threads, len(jobs))
    print(f"{len(jobs)} rule runs of {args.steps} steps x {bed.batch}, {bed.threads} thread each; "
          f"{os.cpu_count()} cores, {processes} worker processes")

    shared = cache_dir()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["INSTRUCTLIB_CACHE"] = str(fresh_cache(Path(tmp) / "loop", shared))
        start = time.perf_counter()
        with cpu_threads(bed.threads):
            for b, n, seed in jobs:
                run_rules(lambda: copy.deepcopy(base), tokenizer, b, n, seed, key)
        loop_seconds = time.perf_counter() - start
        loop_weights = [torch.load(train_rules(lambda: copy.deepcopy(base), tokenizer, b, n, s, key).path / "model.pt",
                                   weights_only=True) for b, n, s in jobs]

        os.environ["INSTRUCTLIB_CACHE"] = str(fresh_cache(Path(tmp) / "workers", shared))
        start = time.perf_counter()
        built = prebuild_course_rules(tokenizer, jobs, key, processes=processes)
        worker_seconds = time.perf_counter() - start
        worker_weights = [torch.load(train_rules(lambda: copy.deepcopy(base), tokenizer, b, n, s, key).path / "model.pt",
                                     weights_only=True) for b, n, s in jobs]
        os.environ["INSTRUCTLIB_CACHE"] = str(shared)

    same = all(a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a) for a, b in zip(loop_weights, worker_weights))
    print(f"built {built} runs in workers; weights identical to the loop's: {same}")
    print(f"{'one after another (this process)':<40}{loop_seconds:>8.1f} s")
    print(f"{f'side by side ({processes} processes)':<40}{worker_seconds:>8.1f} s")
    print(f"ratio loop/workers: {loop_seconds / worker_seconds:.2f}x")
    if not same:
        raise SystemExit("the workers' weights differ from the loop's")


if __name__ == "__main__":
    main()
