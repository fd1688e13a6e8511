"""Cold-cache time of the course's runs one after another in this process, against the same runs side by
side in worker processes, in one run: chapter 09's one-thread rule runs (``prebuild_course_rules``, one
per core) or the testbed's two-thread runs of chapters 06-09 (``prebuild_course_runs``, one per two cores;
the notebooks use it only where the cores hold two, so ``--kind testbed`` on 2 cores measures the
side-by-side run they skip).

Both build the same runs (a shorter budget than the notebook's, so the script takes minutes) into their
own empty caches, sharing only the pretrained course model; the script checks that both wrote the same
weights, bit for bit, then prints both wall times and their ratio.

    python benchmarks/parallel_runs.py [--kind rules|testbed] [--steps 200] [--runs 4] [--processes N]
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

from instructlib.config import CPU_THREADS, cache_dir, cpu_threads
from instructlib.evaluation.unseen_rules import course_rulebed, prebuild_course_rules, run_rules, train_rules
from instructlib.generate.wording_experiment import (condition_job, course_testbed, prebuild_course_runs,
                                                     run_condition, train_run)
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


def rule_runs(args, base, tokenizer, key):
    """(description, threads per run, build one after another, build side by side, weights of the runs) for rule runs."""
    bed = replace(course_rulebed(max_len=base.config.block_size), steps=args.steps)
    jobs = [(bed, n, seed) for n in (16, 256, 64, 1024) for seed in (0, 1)][: args.runs]
    loop = lambda: [run_rules(lambda: copy.deepcopy(base), tokenizer, b, n, s, key) for b, n, s in jobs]  # noqa: E731
    side = lambda p: prebuild_course_rules(tokenizer, jobs, key, processes=p)  # noqa: E731
    paths = lambda: [train_rules(lambda: copy.deepcopy(base), tokenizer, b, n, s, key).path for b, n, s in jobs]  # noqa: E731
    return f"{len(jobs)} rule runs of {args.steps} steps x {bed.batch}", bed.threads, loop, side, paths


def testbed_runs(args, base, tokenizer, key):
    """The same for testbed runs (chapter 06's conditions: human wordings, k = 1, 4, 16, all x seeds 0, 1)."""
    bed = replace(course_testbed(max_len=base.config.block_size), steps=args.steps)
    conds = [(k, seed) for k in (1, 4, 16, None) for seed in (0, 1)][: args.runs]
    loop = lambda: [run_condition(lambda: copy.deepcopy(base), tokenizer, bed, "human", k, s, key)  # noqa: E731
                    for k, s in conds]
    side = lambda p: sum(prebuild_course_runs([condition_job(bed, "human", k, s, key) for k, s in conds],  # noqa: E731
                                              processes=p))
    paths = lambda: [train_run(lambda: copy.deepcopy(base), tokenizer, bed, "human", k, s, key).path  # noqa: E731
                     for k, s in conds]
    return f"{len(conds)} testbed runs of {args.steps} steps x {bed.batch}", CPU_THREADS, loop, side, paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="rules", choices=["rules", "testbed"], help="which runs")
    parser.add_argument("--steps", type=int, default=200, help="training steps per run")
    parser.add_argument("--runs", type=int, default=4, help="runs to build")
    parser.add_argument("--processes", type=int, default=None,
                        help="workers (default: cores / threads per run, at least 2)")
    args = parser.parse_args()

    base, tokenizer, key = load_model("tinygpt"), load_tokenizer("tinygpt"), course_model_dir().name
    what, threads, loop, side, paths = (rule_runs if args.kind == "rules" else testbed_runs)(args, base, tokenizer, key)
    processes = args.processes or max(2, processes_for(threads, args.runs))
    print(f"{what}, {threads} thread(s) each; {os.cpu_count()} cores, {processes} worker processes")

    shared = cache_dir()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["INSTRUCTLIB_CACHE"] = str(fresh_cache(Path(tmp) / "loop", shared))
        start = time.perf_counter()
        with cpu_threads(threads):
            loop()
        loop_seconds = time.perf_counter() - start
        loop_weights = [torch.load(p / "model.pt", weights_only=True) for p in paths()]

        os.environ["INSTRUCTLIB_CACHE"] = str(fresh_cache(Path(tmp) / "workers", shared))
        start = time.perf_counter()
        built = side(processes)
        worker_seconds = time.perf_counter() - start
        worker_weights = [torch.load(p / "model.pt", weights_only=True) for p in paths()]
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
