"""Speed of ``generate.dedup`` against the Self-Instruct reference's ROUGE-L filter, measured in one run.

    python benchmarks/dedup.py            # 2,000 candidates against both references, then ours on 20,000
    python benchmarks/dedup.py --quick    # 300 candidates, ours on 3,000 (a few seconds)

Candidates are deterministic: the English seed instructions of the course with 0-5 word-level
mutations each (delete, insert, substitute, swap, or splice two seeds), so many are near-duplicates
of a seed or of each other, as a language model's output is. The pool starts with the seeds.

Peers, each making the same greedy decision (drop a candidate when max ROUGE-L F > 0.7 against
seeds + kept so far):
  * Self-Instruct's loop (``bootstrap_instructions.py``): ``RougeScorer.score(candidate, other)`` for
    every pool text, re-tokenizing both each time; run sequentially in this process (the original
    opens a ``multiprocessing.Pool(4)`` per candidate; ``--pool-prefix`` times that on a prefix);
  * Alpaca's loop (``generate_instruction.py``): the pool pre-tokenized once, ``rouge_scorer._score_lcs``
    per pair (sequential here too).
All kept sets must be identical; the ratio is reference time / our time.
"""
from __future__ import annotations

import argparse
import random
import time
from functools import partial
from multiprocessing import Pool

from rouge_score import rouge_scorer

from instructlib.data.seeds import load_seed_tasks
from instructlib.generate.dedup import THRESHOLD, dedup


def make_candidates(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(seed instructions, n mutated candidates), deterministic for a given seed."""
    seeds = [t.instruction for t in load_seed_tasks(language="en")]
    vocab = sorted({w for s in seeds for w in s.split()})
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        base = rng.choice(seeds) if not out or rng.random() < 0.7 else rng.choice(out)
        words = base.split()
        for _ in range(rng.randint(0, 5)):
            op = rng.randrange(5)
            i = rng.randrange(len(words))
            if op == 0 and len(words) > 2:
                words.pop(i)
            elif op == 1:
                words.insert(i, rng.choice(vocab))
            elif op == 2:
                words[i] = rng.choice(vocab)
            elif op == 3 and i + 1 < len(words):
                words[i], words[i + 1] = words[i + 1], words[i]
            else:
                other = rng.choice(seeds).split()
                words = words[: max(1, len(words) // 2)] + other[len(other) // 2:]
        out.append(" ".join(words))
    return seeds, out


def self_instruct_reference(candidates: list[str], seeds: list[str], pool_workers: int = 0) -> list[int]:
    """Self-Instruct's decision loop; pool_workers > 0 opens a process pool per candidate as it does."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    machine: list[str] = []
    kept = []
    for i, inst in enumerate(candidates):
        if pool_workers:
            with Pool(pool_workers) as p:
                scores = p.map(partial(scorer.score, inst), seeds + machine)
        else:
            scores = [scorer.score(inst, other) for other in seeds + machine]
        if max(s["rougeL"].fmeasure for s in scores) > THRESHOLD:
            continue
        kept.append(i)
        machine.append(inst)
    return kept


def alpaca_reference(candidates: list[str], seeds: list[str]) -> list[int]:
    """Alpaca's decision loop: the pool is tokenized once, rouge-score's LCS table per pair."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool_tokens = [scorer._tokenizer.tokenize(s) for s in seeds]
    kept = []
    for i, inst in enumerate(candidates):
        tokens = scorer._tokenizer.tokenize(inst)
        scores = [rouge_scorer._score_lcs(tokens, other).fmeasure for other in pool_tokens]
        if max(scores) > THRESHOLD:
            continue
        kept.append(i)
        pool_tokens.append(tokens)
    return kept


def _timed(fn, *args) -> tuple[list[int], float]:
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: time the references and ours, check equal kept sets, print ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 candidates, ours on 3,000")
    parser.add_argument("--n", type=int, default=2000, help="candidates for the comparison")
    parser.add_argument("--large", type=int, default=20000, help="candidates for ours alone")
    parser.add_argument("--pool-prefix", type=int, default=30,
                        help="candidates timed with Self-Instruct's per-candidate Pool(4) (0: skip)")
    args = parser.parse_args(argv)
    n, large = (300, 3000) if args.quick else (args.n, args.large)

    seeds, candidates = make_candidates(n)
    print(f"{len(seeds)} English seed instructions in the pool, {n} candidates, threshold {THRESHOLD}")
    ours, t_ours = _timed(dedup, candidates, THRESHOLD, seeds)
    si, t_si = _timed(self_instruct_reference, candidates, seeds)
    alp, t_alp = _timed(alpaca_reference, candidates, seeds)
    assert ours == si == alp, "kept sets differ"
    print(f"kept {len(ours)} of {n} (identical kept set in all three)")
    print("| method | seconds | reference / ours |")
    print("|---|---|---|")
    print(f"| Self-Instruct loop (rouge-score, sequential) | {t_si:.2f} | {t_si / t_ours:.0f}x |")
    print(f"| Alpaca loop (pre-tokenized rouge-score LCS) | {t_alp:.2f} | {t_alp / t_ours:.0f}x |")
    print(f"| instructlib.generate.dedup | {t_ours:.4f} | 1x |")
    if args.pool_prefix and not args.quick:
        k = args.pool_prefix
        _, t_pool = _timed(self_instruct_reference, candidates[:k], seeds, 4)
        _, t_seq = _timed(self_instruct_reference, candidates[:k], seeds)
        print(f"Self-Instruct with its Pool(4) per candidate, first {k} candidates: {t_pool:.2f} s "
              f"vs {t_seq:.2f} s sequential ({t_pool / t_seq:.1f}x slower on this machine), so the "
              f"sequential loop above is the faster, fairer peer")
    seeds, big = make_candidates(large, seed=1)
    kept, t_big = _timed(dedup, big, THRESHOLD, seeds)
    print(f"ours on {large} candidates: kept {len(kept)} in {t_big:.2f} s")


if __name__ == "__main__":
    main()
