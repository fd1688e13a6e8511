"""Course tool: do chapters 06 and 09's headlines survive another base model and another thread count?

Pretrains a TinyGPT with chapter 03's `cpu` recipe but another seed and thread count (a learner's
machine differs; fine-tuning then runs at the course's fixed `config.CPU_THREADS`), then trains on it chapter 06's two headline conditions (1 hand-written wording vs
all 40) and chapter 09's capstone pair ((a) chapter 05's six phrasings vs (e) all generated wordings)
and chapter 09's unseen-rules pair (64 vs 1,024 distinct training rules), and checks the conclusions
the notebooks state: chapter 06, held-out exact match gains at least 10 points; chapter 09's capstone,
at least 20; unseen rules, at least 20; each with the 95 % interval (over wordings or rules) above 0.
Exit status 0 when all stand, 1 when one does not.

    python tools/testbed_rerun.py --base-seed 1 --threads 1      # about 25 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from dataclasses import replace

import numpy as np

def main(argv: list[str] | None = None) -> int:
    """Pretrain, fine-tune both conditions, print the paired difference, return 0 if the conclusion stands."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="pretraining's CPU thread count")
    parser.add_argument("--seed", type=int, default=0, help="fine-tuning seed")
    args = parser.parse_args(argv)

    from instructlib.config import cache_dir
    from instructlib.files import build_once
    from instructlib.generate.wording_experiment import TESTBED_FAMILIES, course_testbed, evaluation_sets, run_condition
    from instructlib.models import load_tokenizer
    from instructlib.models.course import load_model_dir, pretrain_course_model
    from instructlib.pretrain import pretrain_config
    from instructlib.stats import cluster_bootstrap

    cfg = replace(pretrain_config("cpu"), seed=args.base_seed, threads=args.threads)
    tok = load_tokenizer("tinygpt")
    name = f"testbed-rerun-base-seed{args.base_seed}-threads{args.threads}"
    path = build_once(cache_dir() / name, lambda out: pretrain_course_model(out, cfg, tok))
    meta = json.loads((path / "meta.json").read_text())
    print(f"base: seed {args.base_seed}, {meta['torch_threads']} thread(s), held-out perplexity "
          f"{meta['heldout_perplexity']:.2f}, {meta['pretrain_seconds']:.0f} s")
    base = load_model_dir(path)
    bed = course_testbed("cpu", max_len=base.config.block_size)
    runs = {k: run_condition(lambda: copy.deepcopy(base), tok, bed, "human", k, args.seed, base_key=name)
            for k in (1, None)}
    clusters = [(e.family, e.record.instruction) for e in evaluation_sets(bed)["heldout"]]
    one, every = (np.array(runs[k]["scores"]["heldout"], dtype=float) for k in (1, None))
    diff, low, high = cluster_bootstrap(every - one, clusters)
    print(f"held-out exact match: 1 wording {one.mean():.1%}, all 40 {every.mean():.1%}; "
          f"paired difference {diff:+.1%} [{low:+.1%}, {high:+.1%}]")
    stands = diff >= 0.10 and low > 0
    print("chapter 06's conclusion " + ("stands" if stands else "does NOT stand") + " on this base")

    from instructlib.evaluation.wording_capstone import ALL, condition_pools, generated_wordings
    from instructlib.generate.wording_experiment import HAND, run_pool

    pools = condition_pools(TESTBED_FAMILIES, generated_wordings(TESTBED_FAMILIES, "cpu")[0])
    cap = {c: np.array(run_pool(lambda: copy.deepcopy(base), tok, bed, c, pools[c], args.seed, name)["scores"]["heldout"],
                       dtype=float) for c in (HAND, ALL)}
    diff, low, high = cluster_bootstrap(cap[ALL] - cap[HAND], clusters)
    print(f"capstone, held-out exact match: (a) {HAND} {cap[HAND].mean():.1%}, (e) {ALL} {cap[ALL].mean():.1%}; "
          f"paired difference {diff:+.1%} [{low:+.1%}, {high:+.1%}]")
    capstone = diff >= 0.20 and low > 0
    print("chapter 09's conclusion " + ("stands" if capstone else "does NOT stand") + " on this base")

    from instructlib.evaluation.unseen_rules import course_rulebed, rule_clusters, rule_test_sets, run_rules

    rules = course_rulebed("cpu", max_len=base.config.block_size)
    got = {n: np.array(run_rules(lambda: copy.deepcopy(base), tok, rules, n, args.seed, name)["scores"]["unseen"],
                       dtype=float) for n in (64, 1024)}
    diff, low, high = cluster_bootstrap(got[1024] - got[64], rule_clusters(rule_test_sets(rules, 64, args.seed)["unseen"]))
    print(f"unseen rules, exact match: 64 rules {got[64].mean():.1%}, 1,024 rules {got[1024].mean():.1%}; "
          f"paired difference {diff:+.1%} [{low:+.1%}, {high:+.1%}]")
    unseen = diff >= 0.20 and low > 0
    print("chapter 09's unseen-rules conclusion " + ("stands" if unseen else "does NOT stand") + " on this base")
    return 0 if stands and capstone and unseen else 1


if __name__ == "__main__":
    sys.exit(main())
